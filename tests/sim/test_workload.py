"""Arrival processes and length distributions have the statistics they claim."""

from types import SimpleNamespace

import numpy as np
import pytest

from specgrove.cli import main
from specgrove.sim.workload import arrivals, sample_length


def workload(**kw):
    base = dict(arrival="poisson", rate=50.0, cv=1.0, on_s=1.0, off_s=1.0, domains={},
                prompt=SimpleNamespace(dist="fixed", value=8, max=100), output=SimpleNamespace(dist="fixed", value=8, max=100))
    base.update(kw)
    return SimpleNamespace(**base)


def gaps(w, n=4000):
    it = arrivals(w, np.random.default_rng(0))
    times = np.array([next(it).arrival_s for _ in range(n)])
    return np.diff(np.concatenate([[0.0], times]))


@pytest.mark.parametrize("cv", [0.5, 1.0, 3.0])
def test_gamma_arrivals_have_the_rate_and_cv(cv):
    g = gaps(workload(arrival="gamma", cv=cv))
    assert g.mean() == pytest.approx(1 / 50, rel=0.1)
    assert g.std() / g.mean() == pytest.approx(cv, rel=0.1)


def test_onoff_arrivals_are_silent_while_off():
    g = gaps(workload(arrival="onoff", on_s=0.5, off_s=1.5))
    times = np.cumsum(g)
    assert np.all(times % 2.0 < 0.5)  # every arrival inside an on window
    assert len(times) / times[-1] == pytest.approx(50 * 0.25, rel=0.1)  # duty cycle 1/4


def test_lengths():
    rng = np.random.default_rng(1)
    lognormal = SimpleNamespace(dist="lognormal", median=100.0, sigma=0.5, max=150)
    values = np.array([sample_length(lognormal, rng) for _ in range(2000)])
    assert values.max() == 150 and np.median(values) == pytest.approx(100, rel=0.05)
    uniform = SimpleNamespace(dist="uniform", low=3, high=5, max=100)
    assert {sample_length(uniform, rng) for _ in range(200)} == {3, 4, 5}


def test_sweep_cli_writes_table_and_plot(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(
        'duration_s = 2.0\n[cluster]\ngpu = "H100-SXM"\n[models]\npair = "llama-3.1-8b/3.2-1b"\n'
        '[acceptance]\nmode = "tabulated"\nnum_samples = 64\n[policies]\ntree = "chain"\ntree_budget = 4\n'
        '[workload]\nrate = 5.0\n'
    )
    out = tmp_path / "out"
    code = main(["sweep", str(path), "--vary", "workload.rate=2,8", "--vary", "policies.tree=chain,ar",
                 "--processes", "1", "--out", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert "workload.rate" in table and table.count("\n") >= 5
    assert (out / "sweep.png").stat().st_size > 0 and (out / "sweep.json").exists()
    assert main(["sweep", str(path), "--vary", "workload.nope=1"]) == 2

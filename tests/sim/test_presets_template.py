"""``specgrove presets`` and ``specgrove sim --template``."""

import json
import re
import tomllib

import pytest

from specgrove.cli import main
from specgrove.sim.build import parse_scenario
from specgrove.sim.hardware import GPUS, LINKS
from specgrove.sim.models import MODELS, PAIRS
from specgrove.sim.scenario import OPEN_TABLES, Scenario, read_scenario_file
from specgrove.sim.template import missing_descriptions, schema_fields, template


def test_presets_json_lists_every_preset_with_its_figures(capsys):
    assert main(["presets", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"gpus", "links", "models", "pairs"}
    assert set(data["gpus"]) == set(GPUS) and set(data["links"]) == set(LINKS)
    assert set(data["models"]) == set(MODELS) and set(data["pairs"]) == set(PAIRS)
    h100 = data["gpus"]["H100-SXM"]
    assert h100["peak_flops"] == GPUS["H100-SXM"].peak_flops and h100["mem_bytes"] == GPUS["H100-SXM"].mem_bytes
    assert data["links"]["nvlink"]["bandwidth"] == LINKS["nvlink"].bandwidth
    m = data["models"]["llama-3.1-8b"]
    assert (m["num_params"], m["num_layers"], m["max_positions"]) == (8.03e9, 32, 131072)
    pair = data["pairs"]["llama-2-7b/68m"]
    assert pair["target"] == "llama-2-7b" and pair["context_tokens"] == 2048
    assert pair["acceptance"]["confidence_mean"] == 0.55 and "gamma" in pair["acceptance"]


def test_presets_tables(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for title in ("GPUs", "Links", "Models", "Pairs"):
        assert re.search(rf"^{title} ", out, re.M)
    for name in [*GPUS, *LINKS, *MODELS, *PAIRS]:
        assert name in out
    assert "989 TFLOP/s" in out and "131072" in out and "confidence_mean" in out
    assert main(["presets", "--kind", "links"]) == 0
    out = capsys.readouterr().out
    assert "nvlink" in out and "H100-SXM" not in out


def test_template_parses_and_validates(tmp_path, capsys):
    assert main(["sim", "--template"]) == 0
    text = capsys.readouterr().out
    assert text == template()
    data = tomllib.loads(text)
    scenario = parse_scenario(data)  # both passes: fields and cross-field build
    assert scenario.model_dump() == Scenario().model_dump()
    path = tmp_path / "t.toml"
    path.write_text(text)
    assert read_scenario_file(path) == data


def _section_of(text: str) -> dict[str, list[str]]:
    """Section name ('' for the top) -> the key names written in it, live or commented out."""
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in text.splitlines():
        if m := re.match(r"^\[([\w.]+)\]$", line):
            current = m.group(1)
            sections.setdefault(current, [])
        elif m := re.match(r"^#? ?(\w+) = ", line):
            sections[current].append(m.group(1))
    return sections


def test_template_covers_every_schema_field_with_a_comment():
    text = template()
    sections = _section_of(text)
    for dotted in schema_fields():
        *parents, leaf = dotted.split(".")
        assert leaf in sections.get(".".join(parents), []), f"{dotted} is not in the template"
    for line in text.splitlines():
        if re.match(r"^#? ?\w+ = ", line):
            assert "  # " in line, f"no comment: {line}"
    assert missing_descriptions() == []


def test_every_unset_field_is_commented_out_and_open_tables_are_empty():
    data = tomllib.loads(template())
    assert "horizon_s" not in data and "e2e_s" not in data["slo"]
    assert data["policies"]["tree_options"] == {}
    assert set(OPEN_TABLES) <= {k for section in data.values() if isinstance(section, dict) for k in section}


@pytest.mark.parametrize("argv", [["sim"], ["sim", "--out", "x"]])
def test_sim_without_scenario_or_template_is_a_usage_error(argv, capsys):
    assert main(argv) == 2
    assert "--template" in capsys.readouterr().err


def test_sim_help_points_to_the_reference(capsys):
    with pytest.raises(SystemExit):
        main(["sim", "--help"])
    out = capsys.readouterr().out
    assert "docs/simulator.md" in out and "--template" in out

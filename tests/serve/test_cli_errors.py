"""Bad ``serve`` and ``load`` input: one line naming what is wrong, exit 2, before any work."""

import socket

import pytest

from specgrove.cli import main


@pytest.mark.parametrize("argv, message", [
    (["serve", "--port", "70000"], "--port must be in 0..65535"),
    (["serve", "--scheduler", "lifo"], "--scheduler: unknown scheduler policy 'lifo'; valid: "),
    (["serve", "--method", "magic"], "unknown method 'magic'"),
    (["serve", "--max-queue", "0"], "--max-queue must be >= 1"),
    (["serve", "--batch-budget", "all"], "--batch-budget: unknown batch-budget policy 'all'"),
    (["serve", "--router", "random"], "--router: unknown router policy 'random'; valid: least-outstanding, "
                                      "power-of-two, round-robin, speculation-aware"),
    (["serve", "--replicas", "0"], "--replicas must be >= 1, got 0"),
    (["serve", "--replicas", "2", "--port", "0", "--target", "nowhere", "--draft", "nowhere"],
     "target model path 'nowhere' is not a directory"),
    (["load", "missing.toml", "--out", "OUT"], "missing.toml: cannot read scenario"),
    (["load", "missing.jsonl", "--out", "OUT"], "missing.jsonl: cannot read trace"),
    (["load", "t.jsonl", "--out", "OUT", "--url", "127.0.0.1:8000"], "--url must start with http://"),
    (["load", "t.jsonl", "--out", "OUT", "--timeout", "0"], "--timeout must be > 0"),
])
def test_bad_arguments(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.jsonl").write_text('{"arrival_s": 0, "prompt_tokens": 3, "output_tokens": 2}\n')
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("specgrove: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_serve_refuses_a_busy_port(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in capsys.readouterr().err


def test_serve_refuses_a_batch_whose_caches_cannot_fit(capsys):
    from specgrove.cli import main

    assert main(["serve", "--port", "0", "--max-batch", "10000000", "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "KV cache" in err, err

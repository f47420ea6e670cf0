"""ENAS: the generic LSTM controller, REINFORCE, the memory buffer, checkpoints (specs/ALGORITHMS.md §5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import searchspaces
import strategies
from nas.cli import main
from strategies.controller import LSTMController
from strategies.enas import PROFILES, build_controller
from strategies.memory import MemoryBuffer

TINY = ["--strategy", "enas", "--dataset", "digits", "--set", "supernet.C=4", "--set", "supernet.N=1",
        "--set", "train.batch_size=128", "--set", "eval.monitor_archs=0", "--set", "eval.sample_check=0",
        "--set", "strategy.controller_steps=2", "--set", "strategy.num_aggregate=3",
        "--set", "strategy.derive_samples=4", "--quiet"]


def _controller(space, profile="cifar_micro", seed=0) -> LSTMController:
    return build_controller(space, strategies.strategy_class("enas").resolved(
        {**strategies.strategy_class("enas").defaults(), "profile": profile}), seed)


def _spaces():
    darts = searchspaces.get("darts")
    return [searchspaces.get("nb201"), darts, darts.restrict("normal:3<-1", ["sep_conv_3x3", "skip_connect"]),
            searchspaces.get("mobilenet"), searchspaces.get("nasbench-macro")]


# --- the controller over any space ---------------------------------------------------------------------------------

@pytest.mark.parametrize("space", _spaces(), ids=lambda s: f"{s.name}{'-masked' if s.is_restricted() else ''}")
def test_controller_draws_canonical_archs_the_space_contains(space):
    drawn = _controller(space).sample(64, np.random.default_rng(0), space.allowed_next)
    for row in drawn.tokens:
        arch = space.decode(row)
        assert arch.codes() == tuple(row)  # the tokens are the canonical codes: the buffer stores what was drawn
        assert space.contains(arch)
    assert len({tuple(r) for r in drawn.tokens}) > 50  # a fresh controller is close to uniform


def test_mobilenet_inactive_blocks_have_one_allowed_value_and_cost_no_log_probability():
    space = searchspaces.get("mobilenet")  # all-zero codes: every stage at depth 2
    k3 = space.label_index("k1_3")
    assert space.allowed_next(k3, np.zeros((1, k3), dtype=np.int64)).sum() == 1
    assert space.allowed_next(space.label_index("k1_2"), np.zeros((1, 6), dtype=np.int64)).sum() == 3


def test_log_probability_and_entropy_are_those_of_the_masked_bounded_policy():
    space = searchspaces.get("darts")
    controller = _controller(space)
    drawn = controller.sample(8, np.random.default_rng(1), space.allowed_next)
    tokens = torch.from_numpy(drawn.tokens)
    # Recompute by teacher forcing, step by step: sum of log softmax over the allowed candidates.
    x, state = controller.start.expand(8, -1), (torch.zeros(8, 64), torch.zeros(8, 64))
    logp_sum, entropy = torch.zeros(8), torch.zeros(8)
    for t in range(len(controller)):
        state = controller.cell(x, state)
        allowed = torch.from_numpy(space.allowed_next(t, drawn.tokens[:, :t]))
        logits = controller.logits(t, state[0])
        bound = 1.10 if ".in" in space.labels[t] else 1.10 / 2.5  # cifar_micro: inputs 1.1, ops 0.44
        assert logits.abs().max() <= bound + 1e-6
        logp = torch.log_softmax(logits.masked_fill(~allowed, -math.inf), 1)
        logp_sum += logp.gather(1, tokens[:, t:t + 1]).squeeze(1)
        entropy -= torch.where(allowed, logp.exp() * logp, torch.zeros(())).sum(1)
        x = controller.token_input(t, tokens[:, t])
    assert torch.allclose(drawn.log_prob, logp_sum, atol=1e-5)
    assert torch.allclose(drawn.entropy, entropy, atol=1e-5)
    assert torch.allclose(drawn.hidden, controller.hidden_states(drawn.tokens), atol=1e-6)


def test_profiles_are_the_reference_scripts():
    assert PROFILES["cifar_micro"]["tanh_constant"] / PROFILES["cifar_micro"]["op_tanh_reduce"] == pytest.approx(0.44)
    assert (PROFILES["ptb"]["tanh_constant"], PROFILES["ptb"]["temperature"], PROFILES["ptb"]["lstm_size"]) == (
        2.5, 5.0, 100)
    enas = strategies.get("enas", profile="ptb", lstm_size=32)
    assert enas.resolved(enas.opts)["lstm_size"] == 32 and enas.resolved(enas.opts)["temperature"] == 5.0


# --- REINFORCE ----------------------------------------------------------------------------------------------------

class _Valid:
    """A stand-in validation split: enough for `setup`; rewards are replaced in the tests that use it."""

    def __len__(self):
        return 10


def _enas(space, **opts):
    enas = strategies.get("enas", **opts)
    net = torch.nn.Linear(1, 1)
    enas.setup(net, space, seed=0, data=type("D", (), {"valid": _Valid()})())
    return enas


def test_reinforce_raises_the_probability_of_rewarded_choices(monkeypatch):
    space = searchspaces.get("nb201")
    enas = _enas(space, profile="ptb", controller_steps=0, num_aggregate=10, lr=0.05)
    conv = space.decisions[0].candidates.index("nor_conv_3x3")

    def reward(archs, batches):
        return torch.tensor([float(a.codes()[0] == conv) for a in archs])

    monkeypatch.setattr(enas, "rewards", reward)

    def share():
        return float((enas.draw(400).tokens[:, 0] == conv).mean())

    before = share()
    for _ in range(40):
        enas.controller_step(iter(()), epoch=0)
    assert before < 0.35 and share() > 0.6  # the sign of the policy gradient (NNI issue #2765)


def test_baseline_moves_before_each_loss(monkeypatch):
    enas = _enas(searchspaces.get("nb201"), num_aggregate=3, baseline_decay=0.5, entropy_weight=0.0)
    monkeypatch.setattr(enas, "rewards", lambda archs, batches: torch.tensor([1.0, 0.0, 1.0]))
    enas.controller_step(iter(()), epoch=0)
    assert enas.baseline == pytest.approx(((0.5 * 0 + 0.5 * 1) * 0.5 + 0) * 0.5 + 0.5)


# --- memory buffer ------------------------------------------------------------------------------------------------

def test_buffer_fills_then_replaces_random_rows_or_the_tail():
    rng = np.random.default_rng(0)
    rows = [np.full((6, 2), i) for i in range(3)]
    for mode in ("random", "tail"):
        buffer = MemoryBuffer(10, 2, mode, replace_rows=3)
        assert buffer.add(rows[0], rng) == 6 and buffer.add(rows[1], rng) == 4 and len(buffer) == 10
        buffer.add(rows[2], rng)
        values = buffer.rows[:, 0].tolist()
        assert values.count(2) == 3 and len(buffer) == 10
        if mode == "tail":
            assert values == [0] * 6 + [1] + [2] * 3  # the reference: rows[:-3] kept forever
    drawn = buffer.draw(5, rng)
    assert len(drawn) == 5 and len({tuple(r) for r in drawn.tolist()}) <= 5


def test_reconstruction_loss_learns_the_buffer_and_the_compat_flags_change_it():
    space = searchspaces.get("nb201")
    controller = _controller(space, "ptb")
    tokens = torch.from_numpy(controller.sample(20, np.random.default_rng(0), space.allowed_next).tokens)
    fixed = controller.reconstruction_loss(tokens)
    assert fixed.item() == pytest.approx(math.log(5), rel=0.05)  # a fresh controller: near uniform
    assert controller.reconstruction_loss(tokens, double_softmax=True).item() != pytest.approx(fixed.item())
    raw = controller.reconstruction_loss(tokens, raw_tokens=True)
    raw.backward()
    assert controller.decoders[0].weight.grad is None  # decision 0 is never predicted in the reference form
    optimizer = torch.optim.Adam(controller.parameters(), lr=0.01)
    for _ in range(100):
        optimizer.zero_grad()
        loss = controller.reconstruction_loss(tokens)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * fixed.item()


# --- end to end ---------------------------------------------------------------------------------------------------

def test_enas_with_memory_resumes_bit_exact(interrupted_and_resumed):
    a, b = interrupted_and_resumed(["search", *TINY, "--epochs", "2", "--set", "strategy.memory=true",
                                    "--set", "strategy.buffer_store_epoch=0", "--set", "strategy.buffer_loss_epoch=0",
                                    "--set", "strategy.buffer_per_epoch=20", "--set", "search.method=none"])
    sa, sb = a["strategy"], b["strategy"]
    assert len(sa["buffer"]["rows"]) == 40 and torch.equal(sa["buffer"]["rows"], sb["buffer"]["rows"])
    assert sa["rng"] == sb["rng"] and sa["baseline"] == sb["baseline"] and sa["baseline"] != 0.0
    assert all(torch.equal(sa["controller"][k], sb["controller"][k]) for k in sa["controller"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_enas_refuses_a_run_without_a_validation_split(tmp_path, capsys):
    assert main(["search", *TINY, "--epochs", "1", "--set", "data.valid_fraction=0",
                 "--out", str(tmp_path / "r")]) == 2
    assert "validation split" in capsys.readouterr().err
    assert main(["search", *TINY, "--set", "strategy.buffer_replace=last", "--out", str(tmp_path / "s")]) == 2
    assert "strategy.buffer_replace='last' is not valid; accepted: random, tail" in capsys.readouterr().err


# --- the hidden-state analysis ------------------------------------------------------------------------------------

def test_edit_distance_counts_edits_and_ignores_node_relabelling():
    from searchspaces.similarity import EditDistances, common_connections

    space = searchspaces.get("nb201")
    a = space.parse("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")
    ged = EditDistances(timeout=5.0)
    assert ged(space.to_graph(a), space.to_graph(a)) == 0
    assert ged(space.to_graph(a), space.to_graph(a.replace(**{"3<-0": "nor_conv_3x3"}))) == 1  # one op substituted
    assert ged(space.to_graph(a), space.to_graph(a.replace(**{"3<-0": "none"}))) == 1  # one edge removed
    # nodes 1 and 2 swapped: the same graph up to relabelling (the `2<-1` edge is none in both)
    b = space.parse("|skip_connect~0|+|nor_conv_3x3~0|none~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|")
    assert ged(space.to_graph(a), space.to_graph(b)) == 0 and ged.inexact == 0
    assert common_connections(space.to_graph(a), space.to_graph(a)) == 4
    darts = searchspaces.get("darts")
    assert darts.to_graph(darts.sample(np.random.default_rng(0))).number_of_edges() == 16


def test_the_permutation_edit_distance_is_networkx_exact_one():
    from searchspaces.similarity import edit_distance, permutation_edit_distance

    space = searchspaces.get("nb201")
    rng = np.random.default_rng(5)
    for _ in range(40):
        ga, gb = space.to_graph(space.sample(rng)), space.to_graph(space.sample(rng))
        exact, finished = edit_distance(ga, gb, timeout=30.0)
        assert finished and permutation_edit_distance(ga, gb) == exact


def test_a_hidden_state_that_is_the_arch_correlates_perfectly_with_common_ops():
    from nas.analyze import correlations, hidden_distances, pair_measures
    from searchspaces.similarity import EditDistances

    space = searchspaces.get("nb201")
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(30)]
    onehot = np.stack([np.eye(5)[list(a.codes())].ravel() for a in archs])  # a perfect memory of the arch
    measures = pair_measures(space, archs, None, EditDistances(5.0))
    result = correlations(hidden_distances(onehot), {"common_ops": measures["common_ops"],
                                                     "edit_distance": measures["edit_distance"]})
    assert result["l2"]["common_ops"]["spearman"] == pytest.approx(-1.0)  # ||a - b||^2 = 2 (6 - common ops)
    assert result["l2"]["edit_distance"]["spearman"] > 0.5
    assert result["l2"]["common_ops"]["pairs"] == 30 * 29 // 2


def test_analyze_controller_writes_both_controllers_and_refuses_other_runs(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["search", *TINY, "--epochs", "1", "--set", "search.method=none", "--out", str(run)]) == 0
    table = tmp_path / "table.json"
    assert main(["analyze", "controller", str(run), "--samples", "12", "--out", str(table), "--quiet"]) == 0
    import json

    report = json.loads((run / "analysis" / "controller.json").read_text())
    assert set(report["controllers"]) == {"random", "plain"}
    assert (run / "analysis" / "controller.png").stat().st_size > 0
    assert report["truth"]["benchmark"] == "nb201-digits"  # the space's benchmark for the run's dataset
    expected = {f"cifar_micro/{kind} ({state})" for kind in ("random", "plain") for state in ("read", "emit")}
    assert set(json.loads(table.read_text())["table"]) == expected
    for values in report["controllers"]["plain"]["correlations"]["l2"].values():
        assert values["spearman"] is None or -1 <= values["spearman"] <= 1
    other = tmp_path / "other"  # the same run as if another strategy had trained it
    other.mkdir()
    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text())
    config["strategy"] = {"name": "uniform"}
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["analyze", "controller", str(other)]) == 2
    assert "reads ENAS runs" in capsys.readouterr().err
    assert main(["analyze", "controller", str(run), "--samples", "2"]) == 2
    assert "--samples must be at least 3" in capsys.readouterr().err

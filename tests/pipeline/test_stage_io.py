"""What commands declare for pipelines, and how stage settings become a command line."""
from __future__ import annotations

import click

from routehead_pyserini.cli import main
from routehead_pyserini.pipeline.stage_io import (CommandIO, canonical_key, command_argv, command_io, command_keys,
                                                  pipeline_io)


def test_every_declared_key_is_an_option_of_its_command():
    declared = {name: command_io(command) for name, command in main.commands.items() if command_io(command)}
    assert {"index", "search", "rerank", "evaluate", "train-weights", "loco"} <= set(declared)
    for name, io in declared.items():
        keys = {canonical_key(p) for p in command_keys(main.commands[name]).values()}
        unknown = [k for k in io.inputs + io.outputs if k not in keys]
        assert unknown == [], f"{name} declares {unknown}, which are not its options"
        assert io.outputs, f"{name} writes nothing a later stage could use"


def test_commands_that_only_print_are_not_stages():
    assert command_io(main.commands["datasets"]) is None and command_io(main.commands["presets"]) is None
    assert command_io(None) is None


def test_pipeline_io_marks_and_argv_follows_the_commands_order():
    @pipeline_io(inputs=("run",), outputs=("output",))
    @click.command()
    @click.argument("runs", nargs=-1)
    @click.option("--run")
    @click.option("--top-k", "top_k", type=int)
    @click.option("--dry", is_flag=True)
    @click.option("--output")
    def cmd(runs, run, top_k, dry, output):
        pass

    assert command_io(cmd) == CommandIO(("run",), ("output",))
    params = {canonical_key(p): p for p in command_keys(cmd).values()}
    argv = command_argv(params, {"output": "o.trec", "top-k": 5, "dry": True, "run": "r.trec", "runs": ["-a", "b"]})
    assert argv == ["--run", "r.trec", "--top-k", "5", "--dry", "--output", "o.trec", "--", "-a", "b"]
    assert command_argv(params, {"dry": False, "top-k": None}) == []


def test_outputs_that_stand_for_several_files():
    label, evaluate = command_io(main.commands["label"]), command_io(main.commands["evaluate"])
    assert label.written("static-heads", {"static-heads": "s{k}.json", "static-k": "1, 16"}) == ["s1.json", "s16.json"]
    assert label.written("static-heads", {"static-heads": "s.json"}) == ["s.json"]
    assert label.written("output", {"output": "labels.jsonl"}) == ["labels.jsonl"]
    assert evaluate.written("report-dir", {"report-dir": "w"}) == ["w/report.md", "w/report.json"]

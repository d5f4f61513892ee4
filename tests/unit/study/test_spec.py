"""dit.study.spec: TOML/JSON specs read into one validated dataclass; every bad spec is one UserError line."""

import json

import pytest

from dit.cli.main import main
from dit.errors import UserError
from dit.study.spec import ModelSize, StudySpec

TOML = """
name = "t"
steps = 300
seeds = [0, 1]
eval_steps = [100, 300]

[[grid]]
name = "designs"
models = ["d4-w128-h4"]
blocks = ["adaln-zero", "in-context"]

[[grid]]
name = "sizes"
models = ["S", {depth = 2, hidden_size = 64, num_heads = 2}]
patch_sizes = [2, 4]
"""


def test_toml_and_json_give_the_same_spec(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text(TOML)
    spec = StudySpec.load(toml).validate()
    assert spec.steps == 300 and spec.seeds == [0, 1] and spec.budget.kind == "steps"
    grids = spec.sub_grids()
    assert [g.name for g in grids] == ["designs", "sizes"]
    assert grids[0].blocks == ("adaln-zero", "in-context") and grids[0].patch_sizes == (4,)  # inherited
    assert grids[1].models == (ModelSize(12, 384, 6, "S"), ModelSize(2, 64, 2, "d2-w64-h2"))
    as_json = tmp_path / "s.json"
    as_json.write_text(json.dumps(spec.to_dict()))
    assert StudySpec.load(as_json).sub_grids() == grids


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"steps": 10, "minutes": 1.0}, "exactly one budget"),
        ({}, "exactly one budget"),
        ({"steps": 0}, "positive"),
        ({"minutes": 5.0}, "ckpt_every"),
        ({"steps": 10, "colour": "red"}, "unknown keys ['colour']"),
        ({"steps": 10, "blocks": ["adaln-one"]}, "block 'adaln-one' is unknown"),
        ({"steps": 10, "recipes": ["slow"]}, "recipe 'slow' is unknown"),
        ({"steps": 10, "patch_sizes": [3]}, "patch size 3 does not divide"),
        ({"steps": 10, "models": ["d2-w30-h4"]}, "not divisible by 4 heads"),
        ({"steps": 10, "models": ["d2-w32-h0"]}, "model d2-w32-h0: --num-heads must be positive, got 0"),
        ({"steps": 10, "models": ["huge"]}, "neither a registry size"),
        ({"steps": 10, "seeds": []}, "seeds must be a non-empty list"),
        ({"steps": 10, "seeds": ["a"]}, "seed 'a' must be an integer"),
        ({"steps": 10, "eval_steps": [0]}, "eval_steps must be"),
        ({"steps": 10, "sampler": "rk4"}, "sampler 'rk4' is unknown"),
        ({"steps": 10, "num_samples": 3}, "more than 3"),
        ({"steps": 10, "data": "/some/folder"}, "reference"),
        ({"steps": 10, "grids": [{"name": "a", "widths": [1]}]}, "unknown keys ['widths']"),
        ({"steps": 10, "grids": [{"name": "a"}, {"name": "a"}]}, "grid names must differ"),
    ],
)
def test_bad_specs_are_refused_in_one_line(settings, message):
    with pytest.raises(UserError) as e:
        StudySpec.from_dict(settings).validate()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_command_refuses_a_bad_spec_file_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = 10\nblocks = ['adaln-one']\n")
    assert main(["study", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "adaln-one" in err and "\n" not in err
    broken = tmp_path / "broken.toml"
    broken.write_text("steps = = 10\n")
    assert main(["study", str(broken)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_flags_override_the_spec(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text("steps = 10\nmodels = ['d2-w32-h2']\n")
    assert main(["study", str(spec), "--images", "640", "--blocks", "adaln,in-context", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("dit train ") == 2 and "--block in-context" in out and "--max-steps 20" in out  # 640 / 32

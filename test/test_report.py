# Copyright 2026 dp_tt_ros developers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""The README's results block is rendered from results/*.json and checks the spec's targets."""

import json
from pathlib import Path

import pytest

from dp_tt_ros.evaluation import report


def _write_eval(directory: Path, name: str, success: float, collisions: float) -> None:
    interval = {'value': success, 'ci_low': success - 0.05, 'ci_high': min(1.0, success + 0.05)}
    summary = {'episodes': 100, 'success_rate': interval,
               'collision_rate': {'value': collisions, 'ci_low': 0.0, 'ci_high': collisions}}
    settings = {'checkpoint': f'models/{name}', 'task': name.split('_', 1)[1], 'episodes': 100,
                'batch': 10}
    (directory / f'{name}.json').write_text(json.dumps({'summary': summary,
                                                        'settings': settings}))


def test_readme_results_block_matches_the_json() -> None:
    checkout = Path(__file__).resolve().parent.parent
    assert report.main(['--readme', str(checkout / 'README.md'), '--check', '--results',
                        str(checkout / 'results'), '--models', str(checkout / 'models')]) == 0


def test_targets_are_checked_against_measured_numbers(tmp_path: Path) -> None:
    _write_eval(tmp_path, 'diffusion_push', 0.91, 0.0)
    _write_eval(tmp_path, 'diffusion_pick_place', 0.5, 0.0)
    _write_eval(tmp_path, 'diffusion_avoid', 1.0, 0.0)
    _write_eval(tmp_path, 'bc_avoid', 0.6, 0.2)
    _write_eval(tmp_path, 'transformer_avoid', 0.4, 0.0)
    _write_eval(tmp_path, 'bc_reach', 1.0, 0.0)
    _write_eval(tmp_path, 'transformer_reach', 0.97, 0.0)
    lines = report.target_lines(tmp_path)
    assert '- DP on push: 91 % against ≥ 90 %, met.' in lines
    assert '- DP on pick_place: 50 % against ≥ 80 %, missed.' in lines
    assert '- DP on reach: no evaluation yet (target ≥ 95 %).' in lines
    avoid = next(line for line in lines if line.startswith('- DP over BC on avoid'))
    assert '+40 points' in avoid and avoid.endswith('met.')
    assert '- TT ≥ BC on avoid: 40 % against 60 %, missed.' in lines
    assert ('- TT ≥ BC on reach: 97 % against 100 %, missed, though the 95 % intervals overlap '
            '([92, 100] against [95, 100]).') in lines
    assert any(line.startswith('- Image DP on reach: no evaluation yet') for line in lines)


def test_rows_mark_checkpoints_that_do_not_ship(tmp_path: Path) -> None:
    _write_eval(tmp_path, 'diffusion_reach', 1.0, 0.0)
    _write_eval(tmp_path, 'bc_reach', 0.9, 0.0)
    (tmp_path / 'models' / 'diffusion_reach').mkdir(parents=True)
    block = report.render(tmp_path, tmp_path / 'models')
    assert block.startswith(report.BEGIN) and block.rstrip().endswith(report.END)
    assert '| diffusion_reach | 100 |' in block
    assert '| bc_reach (not shipped) | 100 |' in block


def test_replace_block_requires_the_markers_once() -> None:
    text = f'intro\n{report.BEGIN}\nold\n{report.END}\noutro\n'
    assert report.replace_block(text, f'{report.BEGIN}\nnew\n{report.END}') == (
        f'intro\n{report.BEGIN}\nnew\n{report.END}\noutro\n')
    with pytest.raises(ValueError, match='markers'):
        report.replace_block('no markers here', 'x')


def test_ablation_section_lists_every_run_and_what_was_skipped(tmp_path: Path) -> None:
    assert report.ablation_section(tmp_path) == []
    run = {'label': 'K=4 ddim', 'settings': {'task': 'avoid', 'seed': 100, 'tags': {'group': 'K'}},
           'summary': {'episodes': 50,
                       'success_rate': {'value': 0.5, 'ci_low': 0.4, 'ci_high': 0.6},
                       'collision_rate': {'value': 0.0, 'ci_low': 0.0, 'ci_high': 0.07}},
           'inference_probe_ms': {'median': 4.25}}
    (tmp_path / 'ablations').mkdir()
    (tmp_path / 'ablations' / 'results.json').write_text(json.dumps(
        {'runs': [run], 'skipped': ['beta=linear'], 'plots': ['success_vs_k.png']}))
    lines = report.ablation_section(tmp_path)
    assert lines[0] == '### Ablations (avoid, 50 episodes per run, seeds 100–149)'
    assert '| K | K=4 ddim | 50% [40, 60] | 0% [0, 7] | 4.2 |' in lines
    assert 'Not run (checkpoint missing): beta=linear.' in lines
    assert '![success_vs_k.png](results/ablations/success_vs_k.png)' in lines


def test_modes_section_shows_the_avoid_overlay_once_it_exists(tmp_path: Path) -> None:
    assert report.modes_section(tmp_path) == []
    (tmp_path / 'avoid_modes').mkdir()
    (tmp_path / 'avoid_modes' / 'results.json').write_text(json.dumps(
        {'runs': [], 'skipped': [], 'plots': ['avoid_trajectories.png']}))
    assert ('![avoid_trajectories.png](results/avoid_modes/avoid_trajectories.png)'
            in report.modes_section(tmp_path))

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


"""Checkpoint identity: the hash nodes and sweeps use to tell checkpoints apart."""

from pathlib import Path

from dp_tt_ros.policies.checkpoint import checkpoint_id


def test_checkpoint_id_depends_on_file_contents(tmp_path: Path) -> None:
    for name in ('config.json', 'model.safetensors'):
        (tmp_path / name).write_bytes(b'x')
    first = checkpoint_id(tmp_path)
    (tmp_path / 'model.safetensors').write_bytes(b'y')
    assert checkpoint_id(tmp_path) != first and len(first) == 16

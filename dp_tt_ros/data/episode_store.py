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

"""
Episodes in zarr with diffusion_policy's ReplayBuffer layout, written crash-safely.

Layout (zarr format 2, so diffusion_policy's published ``*_replay.zarr`` datasets open as is)::

    data/<key>          (T_total, ...)   every step of every episode, concatenated
    meta/episode_ends   (n_episodes,)    int64, exclusive end row of each episode
    meta/<name>         (n_episodes,)    optional per-episode values (e.g. episode_success)

Crash safety: an episode's rows (and per-episode values) are written first and
``meta/episode_ends`` is extended last, so ``episode_ends`` is the commit record. zarr writes each
file atomically (temporary file + rename), so a process killed at any instant leaves every file
either old or new. Rows past ``episode_ends[-1]`` are uncommitted: readers ignore them and the next
``add_episode`` overwrites them. A kill between the two files of the commit itself (the array's
new shape, then its new last value) leaves a trailing zero in ``episode_ends``; an entry that does
not advance on its predecessor is recognised as such and ignored too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import zarr
import zarr.storage

DATA = 'data'
META = 'meta'
EPISODE_ENDS = 'episode_ends'
CHUNK_BYTES = 1 << 20
MAX_CHUNK_ROWS = 16384
META_CHUNK = 4096


class EpisodeStoreError(ValueError):
    """The path is not a usable episode store, or an episode does not fit the store."""


def _chunk_rows(row_shape: tuple[int, ...], dtype: np.dtype) -> int:
    row_bytes = max(1, int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize)
    return int(np.clip(CHUNK_BYTES // row_bytes, 1, MAX_CHUNK_ROWS))


class EpisodeStore:
    """A growing set of episodes; open with :meth:`create` or :meth:`open`, not the constructor."""

    def __init__(self, root: zarr.Group, path: str, writable: bool) -> None:
        self._root = root
        self.path = path
        self.writable = writable
        self._cache: dict[str, np.ndarray] = {}
        self._load_index()

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, attrs: dict | None = None) -> 'EpisodeStore':
        """Make a new, empty store at ``path`` (which must not exist yet)."""
        path = os.fspath(path)
        if os.path.exists(path):
            raise EpisodeStoreError(f'{path} already exists; open it with mode "a" to append')
        root = zarr.open_group(path, mode='w-', zarr_format=2)
        root.create_group(DATA)
        root.create_group(META).create_array(EPISODE_ENDS, shape=(0,), chunks=(META_CHUNK,),
                                             dtype='int64')
        if attrs:
            root.attrs.update(attrs)
        return cls(root, path, writable=True)

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = 'r') -> 'EpisodeStore':
        """
        Open an existing store (ours or diffusion_policy's), read-only ('r') or to append ('a').

        A ``.zip`` path (diffusion_policy's ``.zarr.zip``) opens read-only.
        """
        path = os.fspath(path)
        if mode not in ('r', 'a'):
            raise ValueError(f'mode must be "r" (read) or "a" (append), got {mode!r}')
        if not os.path.exists(path):
            raise EpisodeStoreError(f'episode store {path} does not exist')
        is_zip = Path(path).suffix == '.zip'
        if is_zip and mode == 'a':
            raise EpisodeStoreError(f'{path} is a zip archive; zip stores open read-only')
        try:
            store = zarr.storage.ZipStore(path, mode='r') if is_zip else path
            root = zarr.open_group(store, mode='r' if mode == 'r' else 'r+', zarr_format=2)
            has_layout = (isinstance(root.get(DATA), zarr.Group)
                          and isinstance(root.get(META), zarr.Group)
                          and isinstance(root[META].get(EPISODE_ENDS), zarr.Array))
        except Exception as error:  # zarr raises many types for unreadable metadata
            raise EpisodeStoreError(f'{path} is not a readable zarr v2 episode store: '
                                    f'{type(error).__name__}: {error}') from error
        if not has_layout:
            raise EpisodeStoreError(f'{path} lacks the ReplayBuffer layout: expected groups '
                                    f'"{DATA}" and "{META}" and the array '
                                    f'"{META}/{EPISODE_ENDS}"')
        return cls(root, path, writable=(mode == 'a'))

    def _load_index(self) -> None:
        """Read ``episode_ends``, dropping a trailing interrupted commit, and check it."""
        raw = np.asarray(self._root[META][EPISODE_ENDS][:], dtype=np.int64)
        if raw.ndim != 1:
            raise EpisodeStoreError(f'{self.path}: {META}/{EPISODE_ENDS} must be 1-D, '
                                    f'got shape {raw.shape}')
        previous = raw[-2] if raw.size >= 2 else 0
        if raw.size and raw[-1] <= previous and raw[-1] == 0:
            raw = raw[:-1]
        if raw.size and (raw[0] < 0 or np.any(np.diff(raw) < 0)):
            raise EpisodeStoreError(f'{self.path}: {META}/{EPISODE_ENDS} must be non-negative '
                                    f'and non-decreasing, got {raw.tolist()[:20]}')
        self._episode_ends = raw
        for key, array in self._data_arrays().items():
            if array.shape[0] < self.n_steps:
                raise EpisodeStoreError(
                    f'{self.path}: {DATA}/{key} has {array.shape[0]} rows but '
                    f'{META}/{EPISODE_ENDS} says {self.n_steps} steps were committed')
        self._cache.clear()

    def _data_arrays(self) -> dict[str, zarr.Array]:
        return {name: array for name, array in self._root[DATA].arrays()}

    # --- reading ----------------------------------------------------------------------------

    @property
    def n_episodes(self) -> int:
        return int(self._episode_ends.size)

    @property
    def n_steps(self) -> int:
        return int(self._episode_ends[-1]) if self._episode_ends.size else 0

    @property
    def episode_ends(self) -> np.ndarray:
        return self._episode_ends.copy()

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(self._episode_ends, prepend=0)

    @property
    def keys(self) -> list[str]:
        return sorted(self._data_arrays())

    @property
    def meta_keys(self) -> list[str]:
        return sorted(name for name, _ in self._root[META].arrays() if name != EPISODE_ENDS)

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._root.attrs)

    def __len__(self) -> int:
        return self.n_episodes

    def __contains__(self, key: object) -> bool:
        return key in self._data_arrays()

    def __getitem__(self, key: str) -> np.ndarray:
        """All committed steps of ``data/<key>``; cached while the store is read-only."""
        if key in self._cache:
            return self._cache[key]
        arrays = self._data_arrays()
        if key not in arrays:
            raise KeyError(f'{self.path} has no data key {key!r}; it has {sorted(arrays)}')
        values = arrays[key][:self.n_steps]
        if not self.writable:
            self._cache[key] = values
        return values

    def episode_meta(self, name: str) -> np.ndarray:
        """Return ``meta/<name>`` for the committed episodes."""
        if name not in self.meta_keys:
            raise KeyError(f'{self.path} has no per-episode value {name!r}; '
                           f'it has {self.meta_keys}')
        return self._root[META][name][:self.n_episodes]

    def episode_slice(self, index: int) -> slice:
        """Return the rows of episode ``index`` (negative indices count from the end)."""
        if not -self.n_episodes <= index < self.n_episodes:
            raise IndexError(f'episode {index} out of range: {self.path} has '
                             f'{self.n_episodes} episodes')
        index %= self.n_episodes
        start = int(self._episode_ends[index - 1]) if index > 0 else 0
        return slice(start, int(self._episode_ends[index]))

    def get_episode(self, index: int) -> dict[str, np.ndarray]:
        rows = self.episode_slice(index)
        if not self.writable:
            return {key: self[key][rows] for key in self.keys}
        return {key: array[rows] for key, array in self._data_arrays().items()}

    # --- writing ----------------------------------------------------------------------------

    def add_episode(self, episode: Mapping[str, np.ndarray],
                    meta: Mapping[str, float | int | bool] | None = None) -> None:
        """Append one episode (``key -> (T, ...)``) and optional per-episode ``meta`` values."""
        if not self.writable:
            raise EpisodeStoreError(f'{self.path} was opened read-only; open it with mode "a"')
        values = self._check_episode(episode)
        meta_values = self._check_meta(meta or {})
        start = self.n_steps
        end = start + next(iter(values.values())).shape[0]
        arrays = self._data_arrays()
        for key, value in values.items():
            array = arrays.get(key)
            if array is None:
                array = self._root[DATA].create_array(
                    key, shape=(0, *value.shape[1:]), dtype=value.dtype,
                    chunks=(_chunk_rows(value.shape[1:], value.dtype), *value.shape[1:]))
            array.resize((end, *value.shape[1:]))
            array[start:end] = value
        for name, value in meta_values.items():
            array = self._root[META].get(name)
            if array is None:
                array = self._root[META].create_array(name, shape=(0,), dtype=value.dtype,
                                                      chunks=(META_CHUNK,))
            array.resize((self.n_episodes + 1,))
            array[self.n_episodes] = value
        self._commit(end)

    def _commit(self, end: int) -> None:
        """Extend ``episode_ends``: from here on the episode exists for every reader."""
        episode_ends = self._root[META][EPISODE_ENDS]
        episode_ends.resize((self.n_episodes + 1,))
        episode_ends[self.n_episodes] = end
        self._episode_ends = np.append(self._episode_ends, np.int64(end))

    def _check_episode(self, episode: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not episode:
            raise EpisodeStoreError('an episode needs at least one data key')
        values = {key: np.asarray(value) for key, value in episode.items()}
        lengths = {key: (value.shape[0] if value.ndim else None) for key, value in values.items()}
        if len(set(lengths.values())) != 1 or None in lengths.values() or 0 in lengths.values():
            raise EpisodeStoreError(f'every key needs the same number (> 0) of steps along '
                                    f'axis 0, got {lengths}')
        arrays = self._data_arrays()
        if arrays and set(arrays) != set(values):
            raise EpisodeStoreError(
                f'episode keys {sorted(values)} do not match the store keys {sorted(arrays)} '
                f'(missing {sorted(set(arrays) - set(values))}, '
                f'unexpected {sorted(set(values) - set(arrays))})')
        for key, array in arrays.items():
            value = values[key]
            if value.shape[1:] != array.shape[1:]:
                raise EpisodeStoreError(f'{key}: each step must have shape {array.shape[1:]}, '
                                        f'got {value.shape[1:]}')
            if not np.can_cast(value.dtype, array.dtype, casting='same_kind'):
                raise EpisodeStoreError(f'{key}: dtype {value.dtype} cannot be stored as '
                                        f'{array.dtype}')
            values[key] = value.astype(array.dtype, copy=False)
        return values

    def _check_meta(self, meta: Mapping[str, float | int | bool]) -> dict[str, np.ndarray]:
        existing = set(self.meta_keys)
        given = set(meta)
        if self.n_episodes and given != existing:
            raise EpisodeStoreError(
                f'per-episode values {sorted(given)} do not match the store\'s '
                f'{sorted(existing)}; they can only change while the store is empty')
        if EPISODE_ENDS in given:
            raise EpisodeStoreError(f'"{EPISODE_ENDS}" is maintained by the store itself')
        values = {name: np.asarray(value) for name, value in meta.items()}
        for name, value in values.items():
            if value.ndim != 0:
                raise EpisodeStoreError(f'per-episode value {name!r} must be a scalar, '
                                        f'got shape {value.shape}')
        return values

    def __repr__(self) -> str:
        return (f'EpisodeStore({self.path!r}, episodes={self.n_episodes}, steps={self.n_steps}, '
                f'keys={self.keys})')

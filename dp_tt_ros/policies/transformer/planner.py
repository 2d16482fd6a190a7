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
Beam-search planning over transition tokens, with an exact KV cache.

Three ways to rank plans, each returning the planned ``H x action_dim`` actions:

* ``value``: the Trajectory Transformer's planner. Every beam is repeated ``n_expand`` times,
  actions are sampled token by token (after top-k / cdf truncation), reward and value are
  predicted, and beams are ranked by the discounted sum of expected rewards plus the discounted
  expected value, with expectations over bin centres under the untruncated distribution.
* ``likelihood``: deterministic beam search over action tokens ranked by the log-likelihood of
  the whole planned sequence; states, rewards and values are decoded greedily.
* ``return``: the same search with the model conditioned on a desired return-to-go token.

Action tokens may encode offsets from the joint positions in the same transition's state
(``action_offset_dims``): the planner then adds the current state's exact values at the first
step and the decoded predicted state at later ones, so plans and constraints see absolute targets.

A plan may start from a ``history`` of transitions already made, placed between the conditioning
token and the current state as trajectory-transformer's prefix context: ``[c, s_-k a_-k r_-k
V_-k, ..., s_t]``. A single state says where the arm is but not where it is heading; the past
transitions carry the motion, so the model can keep a detour going instead of turning back. Past
values are unknown and get a placeholder token, which is harmless because value tokens are never
attended to.

Tokens the planner already knows are appended without asking the model, and a run of them joins
the next forward call: dimensions that never varied in the training data (their one token), and
``fixed_state_dims`` of predicted states, which keep the current state's tokens (the goal does
not move during a plan). With the option ``tracked_targets`` a whole predicted state is known:
the policy's ``next_state`` maps a state and its absolute action to the next state (a position
controller that reaches its joint target within one control period, as the demos show). The
model then spends its calls on actions, rewards and values only, and later actions are offsets
from where the arm will be rather than from a decoded guess of it, which the small models
trained here get wrong by about one step of motion. Constant action dimensions are still
decoded when constraints apply, so a constraint always sees every dimension.

Constraints mask candidate action tokens before truncation and selection, so a violating token
is never emitted: a beam with no admissible token dies, and planning fails loudly if all do.
Decoding either appends one token at a time to a preallocated KV cache (reordered with the
beams), or re-runs the full window for every token like the reference planner; both see the
same windows, so they produce the same logits. When a plan outgrows the model's block, the
oldest whole transitions are dropped, the conditioning token is moved to the new window start,
and the cache is rebuilt from the new window.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from dp_tt_ros.policies.transformer.gpt import KVCache, TrajectoryGPT
from dp_tt_ros.policies.transformer.tokenizer import Discretizer
from dp_tt_ros.robot import POSITION_LOWER, POSITION_UPPER

MODES = ('value', 'likelihood', 'return')


class PlanningError(RuntimeError):
    """No plan exists under the given constraints."""


@dataclass(frozen=True)
class PlanningOptions:
    """
    Search settings; every field can be changed at inference time.

    The defaults are what the shipped reach and avoid checkpoints plan with: a narrow likelihood
    search over a short horizon, replanned every control step (fast enough for 10 Hz on one CPU
    core). Those checkpoints also set ``tracked_targets``, which needs the policy's next-state
    function and is therefore off for a bare planner. trajectory-transformer's own planner is
    ``mode='value'`` with wider beams.
    """

    mode: str = 'likelihood'
    beam_width: int = 4
    n_expand: int = 2
    planning_horizon: int = 4
    top_k: int | None = None
    cdf: float | None = 0.6
    discount: float = 0.99
    target_return: float | None = None
    use_cache: bool = True
    seed: int = 0
    # Past transitions a policy puts before the current state; the planner itself plans from
    # whatever history it is given. 0 plans from the state alone, as the shipped models do.
    context_transitions: int = 0
    # Predicted states come from the planner's known transition (the arm reaches each joint
    # target within a control period) instead of being decoded token by token.
    tracked_targets: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f'unknown planning mode {self.mode!r}; expected one of '
                             f'{list(MODES)}')
        for name in ('beam_width', 'n_expand', 'planning_horizon'):
            if int(getattr(self, name)) < 1:
                raise ValueError(f'{name} must be >= 1, got {getattr(self, name)!r}')
        if int(self.context_transitions) < 0:
            raise ValueError(f'context_transitions must be >= 0, got {self.context_transitions!r}')
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f'top_k must be >= 1 or None, got {self.top_k!r}')
        if self.cdf is not None and not 0.0 <= self.cdf < 1.0:
            raise ValueError(f'cdf must lie in [0, 1) or be None, got {self.cdf!r}')
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f'discount must lie in (0, 1], got {self.discount!r}')
        if self.mode == 'return' and self.target_return is None:
            raise ValueError('mode "return" needs a target_return (desired return-to-go)')

    def updated(self, **changes: Any) -> 'PlanningOptions':
        known = set(self.__dataclass_fields__)
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f'unknown planning options {unknown}; expected some of '
                             f'{sorted(known)}')
        return replace(self, **changes)


@dataclass
class ConstraintQuery:
    """
    The choice being made: one action dimension of one planning step, for every beam.

    ``chosen`` ``(beams, dim)`` and ``candidates`` ``(beams, n_bins)`` are absolute action
    values; ``action_centres`` ``(action_dim, n_bins)`` are bin centres before each beam's
    ``offset`` ``(beams, action_dim)`` is added (zero unless actions are relative).
    """

    step: int
    horizon: int
    dim: int
    action_dim: int
    chosen: torch.Tensor
    candidates: torch.Tensor
    action_centres: torch.Tensor
    offset: torch.Tensor
    goal: torch.Tensor | None

    @property
    def is_last_dim(self) -> bool:
        return self.dim == self.action_dim - 1

    def completions(self, count: int, seed: int) -> torch.Tensor:
        """
        Candidate actions ``(beams, n_bins, count, action_dim)`` with random later dims.

        The dimensions after ``dim`` are drawn from their bin centres, the same draws for every
        beam and candidate, so a constraint can ask whether a choice can still be completed.
        """
        beams, n_bins = self.candidates.shape
        generator = torch.Generator().manual_seed(seed + 7919 * self.dim)
        later = self.action_centres[self.dim + 1:]
        picks = torch.randint(0, later.shape[1], (count, later.shape[0]), generator=generator)
        tails = later[torch.arange(later.shape[0]), picks]
        tails = tails[None] + self.offset[:, None, self.dim + 1:]
        head = self.full_head()
        return torch.cat([head[:, :, None, :].expand(beams, n_bins, count, self.dim + 1),
                          tails[:, None].expand(beams, n_bins, count, tails.shape[2])],
                         dim=3)

    def full_head(self) -> torch.Tensor:
        """Chosen dims plus each candidate: ``(beams, n_bins, dim + 1)``."""
        beams, n_bins = self.candidates.shape
        chosen = self.chosen[:, None, :].expand(beams, n_bins, self.dim)
        return torch.cat([chosen, self.candidates[:, :, None]], dim=2)

    def full_actions(self) -> torch.Tensor:
        """Every complete candidate action ``(beams, n_bins, action_dim)`` (last dim only)."""
        if not self.is_last_dim:
            raise ValueError(f'full actions exist only at the last action dimension, not at '
                             f'{self.dim}')
        return self.full_head()


class ActionConstraint(ABC):
    """Which candidate tokens are admissible; ``None`` means all of them."""

    @abstractmethod
    def allowed(self, query: ConstraintQuery) -> torch.Tensor | None:
        """Return a ``(beams, n_bins)`` bool mask of admissible candidates, or ``None``."""


class JointLimitConstraint(ActionConstraint):
    """Keep every commanded joint target inside position limits (the Panda's by default)."""

    def __init__(self, lower: Sequence[float] | np.ndarray = POSITION_LOWER,
                 upper: Sequence[float] | np.ndarray = POSITION_UPPER) -> None:
        self.lower = torch.as_tensor(np.asarray(lower, dtype=np.float64))
        self.upper = torch.as_tensor(np.asarray(upper, dtype=np.float64))
        if self.lower.shape != self.upper.shape or torch.any(self.lower > self.upper):
            raise ValueError(f'joint limits need lower <= upper of equal length, got '
                             f'{self.lower.tolist()} and {self.upper.tolist()}')

    def allowed(self, query: ConstraintQuery) -> torch.Tensor:
        if self.lower.numel() != query.action_dim:
            raise ValueError(f'{self.lower.numel()} joint limits for {query.action_dim}-d actions')
        return ((query.candidates >= self.lower[query.dim])
                & (query.candidates <= self.upper[query.dim]))


InsideFn = Callable[[np.ndarray], np.ndarray]
KinematicsFn = Callable[[np.ndarray], np.ndarray]
# (states (beams, state_dim), absolute actions (beams, action_dim)) -> next states, float64
NextStateFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def box(lower: Sequence[float], upper: Sequence[float]) -> InsideFn:
    """Return an ``inside(points (M, d)) -> (M,) bool`` test for an axis-aligned box."""
    low, high = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    if low.shape != high.shape or np.any(low > high):
        raise ValueError(f'a box needs lower <= upper of equal length, got {low} and {high}')

    def inside(points: np.ndarray) -> np.ndarray:
        return np.all((points >= low) & (points <= high), axis=-1)
    return inside


class KeepOutConstraint(ActionConstraint):
    """
    Forbid actions whose joint target (or its end-effector position) lies inside a region.

    ``inside`` is any vectorised test ``(M, d) -> (M,) bool``. In ``'joint'`` space it sees the
    complete joint-target vectors; in ``'cartesian'`` space it sees ``forward_kinematics`` of
    them (``(M, 3)`` positions). At the last action dimension the mask is exact. Earlier, a
    candidate is dropped when none of ``lookahead`` random completions of the remaining
    dimensions leaves the region, which steers beams away from dead ends before they die.
    """

    def __init__(self, inside: InsideFn, space: str = 'joint',
                 forward_kinematics: KinematicsFn | None = None, lookahead: int = 8,
                 seed: int = 0) -> None:
        if space not in ('joint', 'cartesian'):
            raise ValueError(f'keep-out space must be "joint" or "cartesian", got {space!r}')
        if space == 'cartesian' and forward_kinematics is None:
            forward_kinematics = PandaKinematics().tool_positions
        if lookahead < 0:
            raise ValueError(f'lookahead must be >= 0 completions, got {lookahead}')
        self.inside = inside
        self.space = space
        self.forward_kinematics = forward_kinematics
        self.lookahead = lookahead
        self.seed = seed

    def allowed(self, query: ConstraintQuery) -> torch.Tensor | None:
        if query.is_last_dim:
            actions = query.full_actions()[:, :, None, :]
        elif self.lookahead:
            actions = query.completions(self.lookahead, self.seed)
        else:
            return None
        flat = actions.reshape(-1, query.action_dim).cpu().numpy()
        points = flat if self.space == 'joint' else self.forward_kinematics(flat)
        inside = np.asarray(self.inside(points), dtype=bool).reshape(actions.shape[:3])
        return torch.from_numpy(~inside.all(axis=2))


class ReachGoalConstraint(ActionConstraint):
    """Require the plan's final action to put the tool within ``radius`` of the goal."""

    def __init__(self, radius: float = 0.03,
                 forward_kinematics: KinematicsFn | None = None) -> None:
        if radius <= 0.0:
            raise ValueError(f'goal radius must be > 0 metres, got {radius!r}')
        self.radius = radius
        self.forward_kinematics = forward_kinematics or PandaKinematics().tool_positions

    def allowed(self, query: ConstraintQuery) -> torch.Tensor | None:
        if query.step != query.horizon - 1 or not query.is_last_dim:
            return None
        if query.goal is None:
            raise ValueError('ReachGoalConstraint needs the goal position; plan(..., goal=...)')
        actions = query.full_actions()
        points = self.forward_kinematics(actions.reshape(-1, query.action_dim).cpu().numpy())
        distance = np.linalg.norm(points - query.goal.cpu().numpy()[None, :], axis=-1)
        return torch.from_numpy(distance <= self.radius).reshape(actions.shape[:2])


# (xyz, roll) of each arm joint's origin in its parent link, from pybullet_data's panda.urdf.
_PANDA_JOINT_ORIGINS = (
    ((0.0, 0.0, 0.333), 0.0),
    ((0.0, 0.0, 0.0), -math.pi / 2),
    ((0.0, -0.316, 0.0), math.pi / 2),
    ((0.0825, 0.0, 0.0), math.pi / 2),
    ((-0.0825, 0.384, 0.0), -math.pi / 2),
    ((0.0, 0.0, 0.0), math.pi / 2),
    ((0.088, 0.0, 0.0), math.pi / 2),
)
_PANDA_FLANGE_TO_TOOL = 0.107 + 0.105


@dataclass(frozen=True)
class PandaKinematics:
    """Vectorised forward kinematics of the Panda's grasp target (between the fingertips)."""

    base_position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    tool_offset: float = _PANDA_FLANGE_TO_TOOL

    def tool_positions(self, joints: np.ndarray) -> np.ndarray:
        """Map joint vectors ``(M, >= 7)`` to world positions ``(M, 3)`` of the grasp target."""
        joints = np.asarray(joints, dtype=np.float64)
        if joints.ndim != 2 or joints.shape[1] < 7:
            raise ValueError(f'forward kinematics expects (M, >= 7) joint vectors, got '
                             f'{joints.shape}')
        count = joints.shape[0]
        rotation = np.broadcast_to(np.eye(3), (count, 3, 3)).copy()
        position = np.zeros((count, 3))
        for index, (offset, roll) in enumerate(_PANDA_JOINT_ORIGINS):
            position = position + rotation @ np.asarray(offset)
            rotation = rotation @ _rot_x(roll)
            angle = joints[:, index]
            cos, sin = np.cos(angle), np.sin(angle)
            rot_z = np.zeros((count, 3, 3))
            rot_z[:, 0, 0], rot_z[:, 0, 1], rot_z[:, 1, 0], rot_z[:, 1, 1] = cos, -sin, sin, cos
            rot_z[:, 2, 2] = 1.0
            rotation = rotation @ rot_z
        position = position + rotation[:, :, 2] * self.tool_offset
        return position + np.asarray(self.base_position)


def _rot_x(angle: float) -> np.ndarray:
    cos, sin = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])


@dataclass(frozen=True)
class PastTransition:
    """A transition already made: the state planned from, the absolute action, its reward."""

    state: np.ndarray
    action: np.ndarray
    reward: float


@dataclass
class Plan:
    """The winning beam: planned actions in robot units and what ranked it."""

    actions: np.ndarray
    action_tokens: np.ndarray
    score: float
    expected_rewards: np.ndarray


@dataclass
class TraceEntry:
    """One decoding call: the window the model saw (all beams) and the logits it produced."""

    window: torch.Tensor
    logits: torch.Tensor
    prefilled: bool


class _Beams:
    """Token windows of all beams plus the decoding state that must follow them."""

    def __init__(self, model: TrajectoryGPT, window: torch.Tensor, use_cache: bool,
                 trace: list[TraceEntry] | None) -> None:
        self.model = model
        self.window = window
        self.cache: KVCache | None = model.new_cache(window.shape[0]) if use_cache else None
        self.trace = trace
        self.per_beam: dict[str, torch.Tensor] = {}

    @property
    def count(self) -> int:
        return self.window.shape[0]

    def reorder(self, index: torch.Tensor) -> None:
        self.window = self.window.index_select(0, index)
        if self.cache is not None:
            self.cache.reorder(index)
        self.per_beam = {key: value.index_select(0, index) for key, value in self.per_beam.items()}

    def append(self, tokens: torch.Tensor) -> None:
        self.window = torch.cat([self.window, tokens[:, None]], dim=1)

    def next_logits(self) -> torch.Tensor:
        """Logits ``(beams, n_bins)`` for the token after the current window."""
        prefilled = self.cache is None or self.cache.length == 0
        if self.cache is None:
            logits = self.model(self.window)[:, -1]
        elif prefilled:
            logits = self.model(self.window, self.cache, 0)[:, -1]
        else:
            start = self.cache.length
            logits = self.model(self.window[:, start:], self.cache, start)[:, -1]
        if self.trace is not None:
            self.trace.append(TraceEntry(self.window.clone(), logits.clone(), prefilled))
        return logits.double()

    def drop_front(self, n_tokens: int, new_first: torch.Tensor) -> None:
        """Drop ``n_tokens`` after the conditioning token, which becomes ``new_first``."""
        rest = self.window[:, 1 + n_tokens:]
        self.window = torch.cat([new_first[:, None], rest], dim=1)
        if self.cache is not None:
            self.cache.length = 0


class BeamPlanner:
    """Plan action sequences with a trained :class:`TrajectoryGPT` and its tokenizer."""

    def __init__(self, model: TrajectoryGPT, tokenizer: Discretizer, state_dim: int,
                 action_dim: int, action_offset_dims: Sequence[int] | None = None,
                 fixed_state_dims: Sequence[int] = (),
                 next_state: NextStateFn | None = None) -> None:
        transition_dim = state_dim + action_dim + 2
        if model.config.transition_dim != transition_dim:
            raise ValueError(f'model transition_dim {model.config.transition_dim} does not match '
                             f'state_dim {state_dim} + action_dim {action_dim} + 2')
        if tokenizer.n_dims != transition_dim + 1 or tokenizer.n_bins != model.config.n_bins:
            raise ValueError(f'tokenizer has {tokenizer.n_dims} dims x {tokenizer.n_bins} bins; '
                             f'expected {transition_dim + 1} x {model.config.n_bins}')
        if action_offset_dims is not None and (
                len(action_offset_dims) != action_dim
                or not all(0 <= dim < state_dim for dim in action_offset_dims)):
            raise ValueError(f'action_offset_dims must name {action_dim} state dims in '
                             f'0..{state_dim - 1}, got {list(action_offset_dims)}')
        if not all(0 <= dim < state_dim for dim in fixed_state_dims):
            raise ValueError(f'fixed_state_dims must lie in 0..{state_dim - 1}, got '
                             f'{list(fixed_state_dims)}')
        self.model = model
        self.tokenizer = tokenizer
        self.offset_dims = None if action_offset_dims is None else list(action_offset_dims)
        self.fixed_state_dims = set(fixed_state_dims)
        self.next_state = next_state
        self.constant = tokenizer.constant_dims[:transition_dim].tolist()
        self.constant_tokens = tokenizer.constant_tokens[:transition_dim].cpu()
        self.state_dim = state_dim
        self.action_dim = action_dim
        self.transition_dim = transition_dim
        self.reward_dim = state_dim + action_dim
        self.value_dim = self.reward_dim + 1
        self.return_dim = self.reward_dim + 2
        self.block_transitions = model.config.block_size // transition_dim

    @torch.inference_mode()
    def plan(self, state: np.ndarray, options: PlanningOptions,
             constraints: Sequence[ActionConstraint] = (), goal: np.ndarray | None = None,
             trace: list[TraceEntry] | None = None,
             history: Sequence[PastTransition] = ()) -> Plan:
        """
        Plan ``options.planning_horizon`` actions from the current ``state`` (one step).

        ``history`` holds the transitions that led to ``state``, oldest first; a window too
        long for the model's block is slid like any other, dropping the oldest.
        """
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (self.state_dim,) or not np.all(np.isfinite(state)):
            raise ValueError(f'plan expects a finite state of shape ({self.state_dim},), got '
                             f'shape {state.shape}')
        if options.tracked_targets and self.next_state is None:
            raise ValueError('tracked_targets needs a planner built with a next_state function')
        device = self.model.head_weight.device
        generator = torch.Generator(device='cpu').manual_seed(options.seed)
        past = self._history_tokens(history)
        first = torch.full((1, 1), self.model.config.null_return, dtype=torch.long)
        if options.mode == 'return':
            target = self._return_before(past, options.target_return, options.discount)
            first = self._encode(np.array([target]), self.return_dim)[None, :]
        state_tokens = self._encode(state, 0, self.state_dim)[None, :]
        constant = torch.tensor(self.constant[:self.state_dim])
        state_tokens[:, constant] = self.constant_tokens[:self.state_dim][constant]
        window = torch.cat([first, past.reshape(1, -1), state_tokens], dim=1)
        beams = _Beams(self.model, window.to(device), options.use_cache, trace)
        goal_tensor = None if goal is None else torch.as_tensor(goal, dtype=torch.float64)
        beams.per_beam = {
            'score': torch.zeros(1, dtype=torch.float64, device=device),
            'actions': torch.zeros(1, 0, self.action_dim, dtype=torch.long, device=device),
            'state': torch.from_numpy(state)[None].to(device),
            'offset': self._offset(torch.from_numpy(state)[None]).to(device),
            'offsets': torch.zeros(1, 0, self.action_dim, dtype=torch.float64, device=device),
            'rewards': torch.zeros(1, 0, dtype=torch.float64, device=device),
            'alive': torch.ones(1, dtype=torch.bool, device=device),
        }
        horizon = options.planning_horizon
        for step in range(horizon):
            if options.mode == 'value':
                self._value_step(beams, step, options, constraints, goal_tensor, generator)
            else:
                self._likelihood_step(beams, step, options, constraints, goal_tensor)
            beams.per_beam['offsets'] = torch.cat(
                [beams.per_beam['offsets'], beams.per_beam['offset'][:, None]], dim=1)
            if step < horizon - 1 and options.tracked_targets:
                self._append_next_state(beams, state_tokens.to(device))
            elif step < horizon - 1:
                for dim in range(self.state_dim):
                    if dim in self.fixed_state_dims:
                        beams.append(state_tokens[:, dim].to(device).expand(beams.count))
                    elif self.constant[dim]:
                        beams.append(self._constant_token(dim, beams.count, device))
                    else:
                        self._greedy_token(beams, options, accumulate=options.mode != 'value')
                predicted = self.tokenizer.decode(beams.window[:, -self.state_dim:],
                                                  slice(0, self.state_dim))
                beams.per_beam['state'] = predicted
                beams.per_beam['offset'] = self._offset(predicted)
        best = int(torch.argmax(beams.per_beam['score']))
        action_tokens = beams.per_beam['actions'][best].cpu()
        actions = self.tokenizer.decode(action_tokens, slice(self.state_dim, self.reward_dim))
        actions = (actions + beams.per_beam['offsets'][best]).cpu().numpy()
        return Plan(actions=actions, action_tokens=action_tokens.numpy(),
                    score=float(beams.per_beam['score'][best]),
                    expected_rewards=beams.per_beam['rewards'][best].cpu().numpy())

    def model_calls(self, horizon: int, constrained: bool = False,
                    tracked_targets: bool = False) -> int:
        """Sequential decoding calls one plan of ``horizon`` transitions makes."""
        actions = sum(not self._skips_action(dim, constrained) for dim in range(self.action_dim))
        states = 0 if tracked_targets else sum(
            dim not in self.fixed_state_dims and not self.constant[dim]
            for dim in range(self.state_dim))
        return horizon * (actions + 2) + (horizon - 1) * states

    def _append_next_state(self, beams: _Beams, state_tokens: torch.Tensor) -> None:
        """Append every beam's known next state, from its state and the action just planned."""
        tokens = beams.per_beam['actions'][:, -1].cpu()
        actions = (self.tokenizer.decode(tokens, slice(self.state_dim, self.reward_dim))
                   + beams.per_beam['offset'].cpu())
        predicted = self.next_state(beams.per_beam['state'].cpu(), actions).to(
            beams.window.device)
        if predicted.shape != (beams.count, self.state_dim):
            raise ValueError(f'next_state returned shape {tuple(predicted.shape)}; expected '
                             f'({beams.count}, {self.state_dim})')
        encoded = self._encode(predicted.cpu().numpy(), 0, self.state_dim).to(
            beams.window.device)
        for dim in self.fixed_state_dims:
            encoded[:, dim] = state_tokens[0, dim]
        constant = torch.tensor(self.constant[:self.state_dim], device=encoded.device)
        encoded[:, constant] = self.constant_tokens[:self.state_dim].to(encoded.device)[constant]
        beams.window = torch.cat([beams.window, encoded], dim=1)
        beams.per_beam['state'] = predicted.double()
        beams.per_beam['offset'] = self._offset(predicted)

    def _constant_token(self, dim: int, count: int, device: torch.device) -> torch.Tensor:
        return self.constant_tokens[dim].to(device).expand(count)

    def _skips_action(self, dim: int, constrained: bool) -> bool:
        """Whether action ``dim`` is appended as its constant token rather than decoded."""
        return self.constant[self.state_dim + dim] and not constrained

    def _offset(self, states: torch.Tensor) -> torch.Tensor:
        """Return what each beam's action tokens are relative to: ``(beams, action_dim)``."""
        if self.offset_dims is None:
            return torch.zeros(states.shape[0], self.action_dim, dtype=torch.float64,
                               device=states.device)
        return states[:, self.offset_dims].double()

    def _encode(self, values: np.ndarray, first_dim: int,
                end_dim: int | None = None) -> torch.Tensor:
        end_dim = first_dim + len(values) if end_dim is None else end_dim
        return self.tokenizer.encode(values, slice(first_dim, end_dim)).cpu()

    def _history_tokens(self, history: Sequence[PastTransition]) -> torch.Tensor:
        """Tokens ``(k, transition_dim)`` of past transitions, encoded as the training data."""
        rows = []
        for index, past in enumerate(history):
            state = np.asarray(past.state, dtype=np.float64)
            action = np.asarray(past.action, dtype=np.float64)
            if (state.shape != (self.state_dim,) or action.shape != (self.action_dim,)
                    or not np.all(np.isfinite(state)) or not np.all(np.isfinite(action))
                    or not math.isfinite(past.reward)):
                raise ValueError(f'history[{index}] needs a finite ({self.state_dim},) state, '
                                 f'({self.action_dim},) action and reward; got shapes '
                                 f'{state.shape}, {action.shape} and reward {past.reward!r}')
            if self.offset_dims is not None:
                action = action - state[self.offset_dims]
            rows.append(np.concatenate([state, action, [past.reward, 0.0]]))
        if not rows:
            return torch.zeros(0, self.transition_dim, dtype=torch.long)
        tokens = self._encode(np.stack(rows), 0, self.transition_dim)
        constant = torch.tensor(self.constant)
        tokens[:, constant] = self.constant_tokens[constant]
        return tokens

    def _return_before(self, past: torch.Tensor, target: float, discount: float) -> float:
        """
        Return the return-to-go from the oldest past transition that leaves ``target`` from now.

        The inverse of :meth:`_shift_return`: it adds the past rewards' bin centres, so a slide
        past the history restores the target up to the return token's bin.
        """
        centres = self.tokenizer.centres[self.reward_dim]
        rewards = centres[past[:, self.reward_dim].to(centres.device)].cpu()
        weights = discount ** torch.arange(len(past), dtype=torch.float64)
        return float(rewards @ weights) + discount ** len(past) * target

    def _room(self, beams: _Beams, options: PlanningOptions) -> None:
        """Slide the window before the model would be fed more tokens than its block holds."""
        block = self.model.config.block_size
        if beams.window.shape[1] <= block:
            return
        whole = (beams.window.shape[1] - 1) // self.transition_dim
        needed = math.ceil((beams.window.shape[1] - block) / self.transition_dim)
        drop = min(whole, max(needed, self.block_transitions // 2))
        first = beams.window[:, 0]
        if options.mode == 'return':
            first = self._shift_return(beams.window, drop, options.discount)
        beams.drop_front(drop * self.transition_dim, first)

    def _shift_return(self, window: torch.Tensor, drop: int, discount: float) -> torch.Tensor:
        """Move the return-to-go from the window start past ``drop`` transitions."""
        centres = self.tokenizer.centres
        target = centres[self.return_dim][window[:, 0]]
        for index in range(drop):
            reward_token = window[:, 1 + index * self.transition_dim + self.reward_dim]
            target = target - discount ** index * centres[self.reward_dim][reward_token]
        target = target / discount ** drop
        column = slice(self.return_dim, self.return_dim + 1)
        return self.tokenizer.encode(target[:, None], column)[:, 0]

    def _logits(self, beams: _Beams, options: PlanningOptions) -> torch.Tensor:
        self._room(beams, options)
        return beams.next_logits()

    def _greedy_token(self, beams: _Beams, options: PlanningOptions,
                      accumulate: bool) -> torch.Tensor:
        logprobs = F.log_softmax(self._logits(beams, options), dim=-1)
        tokens = logprobs.argmax(dim=-1)
        if accumulate:
            beams.per_beam['score'] = beams.per_beam['score'] + logprobs.gather(
                1, tokens[:, None])[:, 0]
        beams.append(tokens)
        return F.softmax(logprobs, dim=-1)

    def _admissible(self, beams: _Beams, logprobs: torch.Tensor, step: int, dim: int,
                    options: PlanningOptions, constraints: Sequence[ActionConstraint],
                    goal: torch.Tensor | None) -> torch.Tensor:
        """Mask constraint violations, then truncate to top-k / the cdf mass (-inf elsewhere)."""
        if constraints:
            chosen_tokens = beams.window[:, beams.window.shape[1] - dim:] if dim else \
                beams.window[:, :0]
            offset = beams.per_beam['offset'].cpu()
            chosen = self.tokenizer.decode(chosen_tokens.cpu(), slice(self.state_dim,
                                                                      self.state_dim + dim))
            centres = self.tokenizer.centres[self.state_dim:self.reward_dim].cpu()
            query = ConstraintQuery(step=step, horizon=options.planning_horizon, dim=dim,
                                    action_dim=self.action_dim, chosen=chosen + offset[:, :dim],
                                    candidates=centres[dim][None] + offset[:, dim:dim + 1],
                                    action_centres=centres, offset=offset, goal=goal)
            for constraint in constraints:
                allowed = constraint.allowed(query)
                if allowed is not None:
                    logprobs = logprobs.masked_fill(~allowed.to(logprobs.device), -math.inf)
        if options.top_k is not None and options.top_k < logprobs.shape[1]:
            kth = logprobs.topk(options.top_k, dim=1).values[:, -1:]
            logprobs = logprobs.masked_fill(logprobs < kth, -math.inf)
        if options.cdf:
            ascending, order = torch.sort(logprobs, dim=1)
            mass = torch.cumsum(ascending.exp(), dim=1)
            total = mass[:, -1:]
            dropped = mass < options.cdf * total
            logprobs = logprobs.masked_fill(
                torch.zeros_like(dropped).scatter(1, order, dropped), -math.inf)
        return logprobs

    def _value_step(self, beams: _Beams, step: int, options: PlanningOptions,
                    constraints: Sequence[ActionConstraint], goal: torch.Tensor | None,
                    generator: torch.Generator) -> None:
        """Expand, sample actions, predict reward and value, keep the best ``beam_width``."""
        expand = torch.arange(beams.count, device=beams.window.device)
        beams.reorder(expand.repeat_interleave(options.n_expand))
        actions = []
        for dim in range(self.action_dim):
            if self._skips_action(dim, bool(constraints)):
                actions.append(self._constant_token(self.state_dim + dim, beams.count,
                                                    beams.window.device))
                beams.append(actions[-1])
                continue
            logprobs = F.log_softmax(self._logits(beams, options), dim=-1)
            admissible = self._admissible(beams, logprobs, step, dim, options, constraints, goal)
            dead = torch.isinf(admissible).all(dim=1)
            beams.per_beam['alive'] = beams.per_beam['alive'] & ~dead
            weights = admissible.masked_fill(dead[:, None], 0.0).exp().cpu()
            tokens = torch.multinomial(weights, 1, generator=generator)[:, 0].to(admissible.device)
            beams.append(tokens)
            actions.append(tokens)
        reward_probs = self._greedy_token(beams, options, accumulate=False)
        value_probs = self._greedy_token(beams, options, accumulate=False)
        centres = self.tokenizer.centres.to(reward_probs.device)
        beams.per_beam['rewards'] = torch.cat(
            [beams.per_beam['rewards'], (reward_probs @ centres[self.reward_dim])[:, None]], dim=1)
        beams.per_beam['actions'] = torch.cat(
            [beams.per_beam['actions'], torch.stack(actions, dim=1)[:, None]], dim=1)
        discounts = options.discount ** torch.arange(step + 1, dtype=torch.float64,
                                                     device=centres.device)
        value = value_probs @ centres[self.value_dim]
        score = beams.per_beam['rewards'] @ discounts + options.discount ** (step + 1) * value
        score = score.masked_fill(~beams.per_beam['alive'], -math.inf)
        beams.per_beam['score'] = score
        self._keep_best(beams, score, options.beam_width)

    def _likelihood_step(self, beams: _Beams, step: int, options: PlanningOptions,
                         constraints: Sequence[ActionConstraint],
                         goal: torch.Tensor | None) -> None:
        """Grow the action token by token, keeping the ``beam_width`` most likely sequences."""
        for dim in range(self.action_dim):
            if self._skips_action(dim, bool(constraints)):
                beams.append(self._constant_token(self.state_dim + dim, beams.count,
                                                  beams.window.device))
                continue
            logprobs = F.log_softmax(self._logits(beams, options), dim=-1)
            admissible = self._admissible(beams, logprobs, step, dim, options, constraints, goal)
            candidates = beams.per_beam['score'][:, None] + admissible
            per_beam = min(options.n_expand, candidates.shape[1])
            top = candidates.topk(per_beam, dim=1)
            flat_scores = top.values.reshape(-1)
            keep = flat_scores.topk(min(options.beam_width, flat_scores.numel())).indices
            keep = keep[torch.isfinite(flat_scores[keep])]
            if keep.numel() == 0:
                raise PlanningError(f'no admissible token for action dimension {dim} at '
                                    f'planning step {step}: every beam violates a constraint')
            parents = torch.div(keep, per_beam, rounding_mode='floor')
            tokens = top.indices.reshape(-1)[keep]
            beams.reorder(parents)
            beams.append(tokens)
            beams.per_beam['score'] = flat_scores[keep]
        n_dims = self.action_dim
        beams.per_beam['actions'] = torch.cat(
            [beams.per_beam['actions'], beams.window[:, -n_dims:][:, None]], dim=1)
        reward_probs = self._greedy_token(beams, options, accumulate=True)
        self._greedy_token(beams, options, accumulate=True)
        centres = self.tokenizer.centres.to(reward_probs.device)
        beams.per_beam['rewards'] = torch.cat(
            [beams.per_beam['rewards'], (reward_probs @ centres[self.reward_dim])[:, None]], dim=1)

    @staticmethod
    def _keep_best(beams: _Beams, score: torch.Tensor, beam_width: int) -> None:
        keep = score.topk(min(beam_width, score.numel())).indices
        keep = keep[torch.isfinite(score[keep])]
        if keep.numel() == 0:
            raise PlanningError('every beam violates a constraint; no admissible plan')
        beams.reorder(keep)

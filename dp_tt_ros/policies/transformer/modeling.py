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
The Trajectory Transformer as a :class:`~dp_tt_ros.policies.base.Policy`.

The state a transition starts with is the newest low-dimensional observation (joint positions,
object state) with the goal appended, so one model serves every goal. With ``relative_actions``
an action is tokenised as its offset from the joint positions of its own state: the offsets span
a small range, so the same bins resolve them far more finely than absolute targets, and the model
need not copy the state to keep the arm where it is. With ``relative_goal`` the goal enters the
state as its offset from the tool (forward kinematics of the joints): the action then depends on
a few tokens that shrink to zero at the goal, instead of on a comparison between the goal and
seven joint tokens, which a model trained on a few hundred demos does not learn. State dims
that never changed within a training episode (a world-frame goal, fixed scene objects) are listed
in ``static_state_dims``; planning copies them into predicted states instead of decoding them.
``act`` plans from that state with beam search and returns the planned actions as the chunk,
so the executor's receding horizon works exactly as for Diffusion Policy. With the planning
option ``context_transitions`` the plan also sees the last transitions this policy made in the
episode (see :class:`~dp_tt_ros.policies.transformer.planner.PastTransition`). With
``tracked_targets`` predicted states are computed, not decoded: joints at the commanded targets
and the relative goal moved with the tool. The chunk's later rows then hold up when latency
makes the executor start past its first row. The tokenizer's bin edges are a buffer of this
module and travel in ``model.safetensors`` with the weights.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from dp_tt_ros.data.sequence import episode_bounds
from dp_tt_ros.policies.base import Policy, PolicySpec
from dp_tt_ros.policies.transformer.configuration import GOAL_KEY, JOINT_KEY, model_settings
from dp_tt_ros.policies.transformer.dataset import TransitionDataset, discounted_values
from dp_tt_ros.policies.transformer.gpt import GPTConfig, TrajectoryGPT
from dp_tt_ros.policies.transformer.planner import (ActionConstraint, BeamPlanner,
                                                    PandaKinematics, PastTransition, Plan,
                                                    PlanningOptions)
from dp_tt_ros.policies.transformer.tokenizer import Discretizer
from dp_tt_ros.robot import PANDA_LIMITS


class TrajectoryTransformerPolicy(Policy):
    """Discretised transitions, a GPT over them, and a beam-search planner."""

    def __init__(self, spec: PolicySpec, **config: Any) -> None:
        super().__init__()
        own = ('planning', 'static_state_dims')
        self.settings = model_settings({k: v for k, v in config.items() if k not in own})
        if spec.image_keys:
            raise ValueError(f'the Trajectory Transformer is low-dim only; got image keys '
                             f'{spec.image_keys}')
        self.spec = spec
        self.state_keys = [key for key in spec.obs_shapes if key != GOAL_KEY]
        self.state_dim = sum(int(np.prod(spec.obs_shapes[key])) for key in self.state_keys)
        self.state_dim += spec.goal_dim
        transition_dim = self.state_dim + spec.action_dim + 2
        self.transition_dim = transition_dim
        self.action_offset_dims = (self._joint_dims() if self.settings['relative_actions']
                                   else None)
        if self.settings['relative_goal'] and not spec.goal_dim == 3:
            raise ValueError(f'relative_goal needs a 3-d goal position, got goal_dim '
                             f'{spec.goal_dim}')
        self.goal_joint_dims = self._joint_dims() if self.settings['relative_goal'] else None
        static = config.get('static_state_dims')
        self.static_state_dims = [int(dim) for dim in static] if static is not None else list(
            range(self.state_dim - spec.goal_dim, self.state_dim))
        self.tokenizer = Discretizer(transition_dim + 1, int(self.settings['n_bins']),
                                     str(self.settings['strategy']))
        self.gpt_config = GPTConfig(
            n_bins=int(self.settings['n_bins']), transition_dim=transition_dim,
            block_size=int(self.settings['window_transitions']) * transition_dim,
            n_layer=int(self.settings['n_layer']), n_head=int(self.settings['n_head']),
            n_embd=int(self.settings['n_embd']), dropout=float(self.settings['dropout']),
            ordinal_embedding=bool(self.settings['ordinal_embedding']))
        self.gpt = TrajectoryGPT(self.gpt_config)
        planning = {'planning_horizon': spec.horizon, 'discount': self.settings['discount'],
                    **dict(config.get('planning', {}))}
        self.options = self._checked_options(PlanningOptions().updated(**planning))
        self.constraints: list[ActionConstraint] = []
        self.history: dict[int, list[PastTransition]] = {}
        self.row_ids: list[int] | None = None
        weights = torch.ones(transition_dim)
        weights[self.state_dim:self.state_dim + spec.action_dim] = self.settings['action_weight']
        weights[-2] = self.settings['reward_weight']
        weights[-1] = self.settings['value_weight']
        self.register_buffer('loss_weights', weights, persistent=False)

    @property
    def horizon(self) -> int:
        return self.options.planning_horizon

    @property
    def context_dim(self) -> int:
        return self.state_dim - self.spec.goal_dim

    @property
    def planner(self) -> BeamPlanner:
        return BeamPlanner(self.gpt, self.tokenizer, self.state_dim, self.spec.action_dim,
                           self.action_offset_dims, fixed_state_dims=self.static_state_dims,
                           next_state=self._tracked_next_state)

    def _tracked_next_state(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """
        Return the state after commanding ``actions``: joints at their targets, the rest kept.

        Needs the joint positions in the state (relative actions provide them). A relative goal
        moves with the tool: goal - tool(next) = (goal - tool(now)) + tool(now) - tool(next).
        """
        following = states.clone().double()
        following[:, self.action_offset_dims] = actions.double()
        if self.goal_joint_dims is not None:
            kinematics = PandaKinematics()
            now = kinematics.tool_positions(states[:, self.goal_joint_dims].cpu().numpy())
            after = kinematics.tool_positions(following[:, self.goal_joint_dims].cpu().numpy())
            following[:, self.state_dim - 3:] += torch.from_numpy(now - after)
        return following

    def _joint_dims(self) -> list[int]:
        """State columns of the joint positions that relative actions are offsets from."""
        start = 0
        for key in self.state_keys:
            size = int(np.prod(self.spec.obs_shapes[key]))
            if key == JOINT_KEY and size == self.spec.action_dim:
                return list(range(start, start + size))
            start += size
        raise ValueError(f'relative_actions and relative_goal need a {JOINT_KEY!r} observation '
                         f'with {self.spec.action_dim} values; the state keys are '
                         f'{self.state_keys}')

    def _goal_from_tool(self, states: np.ndarray) -> np.ndarray:
        """Replace the goal columns by the goal minus the tool position, with relative_goal."""
        if self.goal_joint_dims is None:
            return states
        states = states.copy()
        tool = PandaKinematics().tool_positions(states[:, self.goal_joint_dims])
        states[:, self.state_dim - 3:] -= tool
        return states

    @classmethod
    def build(cls, data: Mapping[str, np.ndarray], spec: PolicySpec,
              **config: Any) -> 'TrajectoryTransformerPolicy':
        """Create an untrained policy whose tokenizer is fitted on raw episode arrays."""
        policy = cls(spec, **config)
        states, actions, rewards, ends = policy._raw_transitions(data)
        values, returns = discounted_values(rewards, ends, policy.settings['discount'])
        table = np.concatenate([states, actions, rewards[:, None], values[:, None],
                                returns[:, None]], axis=1)
        policy.tokenizer.fit(table)
        changes = np.zeros(policy.state_dim, dtype=bool)
        for start, end in zip(*episode_bounds(ends)):
            if end > start:
                changes |= np.ptp(states[start:end], axis=0) > 0
        policy.static_state_dims = np.flatnonzero(~changes).tolist()
        return policy

    def make_dataset(self, data: Mapping[str, np.ndarray]) -> TransitionDataset:
        """Token windows of ``window_transitions`` transitions from raw arrays + episode_ends."""
        states, actions, rewards, ends = self._raw_transitions(data)
        return TransitionDataset(states, actions, rewards, ends, self.tokenizer,
                                 int(self.settings['window_transitions']),
                                 float(self.settings['discount']))

    def _raw_transitions(self, data: Mapping[str, np.ndarray]
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        needed = [*self.state_keys, 'action', 'reward', 'episode_ends']
        needed += [GOAL_KEY] if self.spec.goal_dim else []
        missing = [key for key in needed if key not in data]
        if missing:
            raise KeyError(f'transformer training data lacks {missing}; it has {sorted(data)}')
        ends = np.asarray(data['episode_ends'], dtype=np.int64).reshape(-1)
        if ends.size == 0:
            raise ValueError('transformer training data has no episodes (episode_ends is empty)')
        rows = int(ends[-1])
        parts = [np.asarray(data[key][:rows], dtype=np.float64).reshape(rows, -1)
                 for key in self.state_keys + ([GOAL_KEY] if self.spec.goal_dim else [])]
        states = np.concatenate(parts, axis=1)
        if states.shape[1] != self.state_dim:
            raise ValueError(f'state arrays have {states.shape[1]} columns; the spec describes '
                             f'{self.state_dim}')
        states = self._goal_from_tool(states)
        actions = np.asarray(data['action'][:rows], dtype=np.float64).reshape(rows, -1)
        if self.action_offset_dims is not None:
            actions = actions - states[:, self.action_offset_dims]
        rewards = np.asarray(data['reward'][:rows], dtype=np.float64).reshape(rows)
        return states, actions, rewards, ends

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Weighted cross-entropy of every next token; padded steps carry no loss."""
        bins = batch['bins'].to(self.loss_weights.device).long()
        mask = batch['loss_mask'].to(self.loss_weights.device)
        if self.training and self.settings['condition_dropout'] > 0:
            rate = float(self.settings['condition_dropout'])
            drop = torch.rand(bins.shape[0], device=bins.device) < rate
            bins = bins.clone()
            bins[drop, 0] = self.gpt_config.null_return
        inputs, targets = bins[:, :-1], bins[:, 1:]
        logits = self.gpt(inputs)
        losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                 reduction='none').view_as(targets)
        weights = self.loss_weights[self.gpt.head_index[:targets.shape[1]]]
        return (losses * weights * mask).sum() / mask.sum().clamp(min=1.0)

    def encode_observations(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Concatenate the raw low-dim state keys per observation step (no learned encoder)."""
        missing = [key for key in self.state_keys if key not in obs]
        if missing:
            raise KeyError(f'observation lacks {missing}; the transformer needs '
                           f'{self.state_keys}')
        parts = []
        for key in self.state_keys:
            array = np.asarray(obs[key], dtype=np.float32)
            if array.ndim < 2:
                raise ValueError(f'obs[{key!r}] must be (B, To, ...), got shape {array.shape}')
            parts.append(array.reshape(array.shape[0], array.shape[1], -1))
        return np.concatenate(parts, axis=2)

    def act(self, context: np.ndarray, goal: np.ndarray | None = None) -> np.ndarray:
        """
        Plan from the newest context step of every batch row; return ``(B, H, d_a)``.

        Relative actions are offsets added to (predicted) joint positions, so a plan can end up
        past a joint limit no demo reached; the chunk is clamped to the robot's position limits,
        where the arm would stop anyway, instead of being rejected whole by the executor.
        Each call is one step of the episode: with ``context_transitions`` it is remembered as
        the state planned from, the first action commanded and the plan's predicted reward (the
        policy never sees the real one).
        """
        states, goal = self._states(context, goal)
        plans = self._plan(states, goal)
        chunk = np.stack([plan.actions for plan in plans])
        if self.action_offset_dims is not None:
            chunk = np.clip(chunk, *self._position_limits())
        chunk = chunk.astype(np.float32)
        keep = self.options.context_transitions
        if keep:
            for row, (episode, plan) in enumerate(zip(self._episodes(len(states)), plans)):
                past = PastTransition(states[row].copy(), chunk[row, 0].astype(np.float64),
                                      float(plan.expected_rewards[0]))
                self.history[episode] = [*self.history.get(episode, []), past][-keep:]
        return chunk

    def _position_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """Position limits in the spec's joint order; unbounded for joints the robot lacks."""
        index = {name: column for column, name in enumerate(PANDA_LIMITS.names)}
        lower = [PANDA_LIMITS.lower[index[name]] if name in index else -np.inf
                 for name in self.spec.joint_names]
        upper = [PANDA_LIMITS.upper[index[name]] if name in index else np.inf
                 for name in self.spec.joint_names]
        return np.array(lower), np.array(upper)

    def plan(self, context: np.ndarray, goal: np.ndarray | None = None) -> list[Plan]:
        """
        Run the planner per batch row and return the full plans (scores, rewards).

        Plans see the remembered history but, unlike ``act``, add nothing to it: nothing was
        commanded.
        """
        return self._plan(*self._states(context, goal))

    def reset(self) -> None:
        """Forget the past transitions: a new episode did not come from them."""
        self.history = {}
        self.row_ids = None

    def track_rows(self, episode_ids: Sequence[int]) -> None:
        """Match rows to episodes by these ids, so history survives rows leaving the batch."""
        self.row_ids = [int(episode) for episode in episode_ids]

    def _states(self, context: np.ndarray, goal: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray | None]:
        """Return the planner states ``(B, state_dim)`` and the goals as ``(B, goal_dim)``."""
        context = np.asarray(context, dtype=np.float64)
        if context.ndim != 3 or context.shape[2] != self.context_dim:
            raise ValueError(f'context must be (B, To, {self.context_dim}), got {context.shape}')
        if self.spec.goal_dim:
            if goal is None:
                raise ValueError(f'the transformer state includes a {self.spec.goal_dim}-d goal; '
                                 'pass goal=(B, goal_dim)')
            goal = np.asarray(goal, dtype=np.float64).reshape(context.shape[0], -1)
            if goal.shape[1] != self.spec.goal_dim:
                raise ValueError(f'goal must be (B, {self.spec.goal_dim}), got {goal.shape}')
            return self._goal_from_tool(np.concatenate([context[:, -1], goal], axis=1)), goal
        return context[:, -1], goal

    def _episodes(self, rows: int) -> list[int]:
        """Episode of each row: the tracked ids, else the row's position."""
        if self.row_ids is None:
            return list(range(rows))
        if len(self.row_ids) != rows:
            raise ValueError(f'{rows} rows but track_rows named {len(self.row_ids)} episodes')
        return self.row_ids

    def _plan(self, states: np.ndarray, goal: np.ndarray | None) -> list[Plan]:
        if self.row_ids is None and len(self.history) not in (0, len(states)):
            # Untracked rows are episodes by position, which a new batch size breaks.
            self.history = {}
        keep = self.options.context_transitions
        was_training = self.training
        self.eval()
        try:
            planner = self.planner
            return [planner.plan(state, self.options, self.constraints,
                                 goal=None if goal is None else goal[row],
                                 history=self.history.get(episode, [])[-keep:] if keep else ())
                    for row, (episode, state) in enumerate(zip(self._episodes(len(states)),
                                                               states))]
        finally:
            self.train(was_training)

    def set_inference_options(self, **options: Any) -> None:
        """Change planning settings by name; ``constraints`` takes ActionConstraint objects."""
        constraints = options.pop('constraints', None)
        updated = self._checked_options(self.options.updated(**options))
        if updated.planning_horizon < self.spec.n_action_steps:
            raise ValueError(f'planning_horizon {updated.planning_horizon} is shorter than '
                             f'n_action_steps {self.spec.n_action_steps}')
        if constraints is not None:
            self.constraints = self._checked_constraints(constraints)
        self.options = updated

    def _checked_options(self, options: PlanningOptions) -> PlanningOptions:
        if options.tracked_targets and self.action_offset_dims is None:
            raise ValueError('the planning option tracked_targets needs a model trained with '
                             'relative_actions: its state must hold the joint positions the '
                             'actions command')
        return options

    @staticmethod
    def _checked_constraints(constraints: Sequence[Any]) -> list[ActionConstraint]:
        bad = [type(item).__name__ for item in constraints
               if not isinstance(item, ActionConstraint)]
        if bad:
            raise TypeError(f'constraints must be ActionConstraint objects, got {bad}')
        return list(constraints)

    def config_dict(self) -> dict[str, Any]:
        planning = {key: value for key, value in vars(self.options).items()}
        return {'spec': self.spec.to_dict(), **self.settings, 'planning': planning,
                'static_state_dims': self.static_state_dims}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> 'TrajectoryTransformerPolicy':
        config = dict(config)
        spec = PolicySpec.from_dict(config.pop('spec'))
        return cls(spec, **config)

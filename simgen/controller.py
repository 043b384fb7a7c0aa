"""Cartesian end-effector controller: damped least-squares IK on MuJoCo's own site Jacobian.

An action is an absolute end-effector target in the world frame plus a gripper command:
``[x, y, z, r11, r21, r31, r12, r22, r32, g]`` = position (m), the first two columns of the
target rotation matrix (the continuous "6D" rotation of Zhou et al. 2019) and g in [0, 1]
(0 open, 1 closed). Each control step turns the target into joint-position targets for the
arm's servos; physics then runs its sub-steps.
"""

from __future__ import annotations

import mujoco
import numpy as np

from simgen.scene import ARM_JOINTS, EEF_SITE, HOME_QPOS

ACTION_DIM = 10
FINGER_OPEN = 0.04  # m per finger


def rot6d_to_mat(r6: np.ndarray) -> np.ndarray:
    """First two columns (6 numbers) -> rotation matrix by Gram-Schmidt."""
    a, b = np.asarray(r6[:3], float), np.asarray(r6[3:6], float)
    x = a / np.linalg.norm(a)
    b = b - x * (x @ b)
    y = b / np.linalg.norm(b)
    return np.stack([x, y, np.cross(x, y)], axis=1)


def rotation_vector(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> rotation vector (axis times angle, angle in [0, pi])."""
    q, v = np.zeros(4), np.zeros(3)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(R, float).ravel())
    mujoco.mju_quat2Vel(v, q if q[0] >= 0 else -q, 1.0)
    return v


def rotation_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rotation vector -> rotation matrix."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    q, R = np.zeros(4), np.zeros(9)
    mujoco.mju_axisAngle2Quat(q, np.asarray(rotvec, float) / angle, angle)
    mujoco.mju_quat2Mat(R, q)
    return R.reshape(3, 3)


def make_action(pos, R, grip: float) -> np.ndarray:
    """Pack a target position, rotation matrix and gripper command into an action vector."""
    return np.concatenate([pos, R[:, 0], R[:, 1], [grip]]).astype(np.float32)


class CartesianController:
    """Turns end-effector pose targets into joint targets with a few DLS-IK iterations."""

    def __init__(
        self,
        model: mujoco.MjModel,
        damping: float = 0.05,
        iterations: int = 1,
        max_joint_step: float = 0.25,
        nullspace_gain: float = 0.1,
    ):
        self.model = model
        self.scratch = mujoco.MjData(model)  # IK runs here, never on the simulated state
        self.site = model.site(EEF_SITE).id
        self.qadr = np.array([model.joint(j).qposadr[0] for j in ARM_JOINTS])
        self.dadr = np.array([model.joint(j).dofadr[0] for j in ARM_JOINTS])
        self.lo = np.array([model.joint(j).range[0] for j in ARM_JOINTS])
        self.hi = np.array([model.joint(j).range[1] for j in ARM_JOINTS])
        self.arm_act = np.array([model.actuator(f"{j.rsplit('/', 1)[0]}/arm{j[-1]}").id for j in ARM_JOINTS])
        self.finger_act = np.array(
            [
                model.actuator(n).id
                for n in ("robot/gripper/gripper_finger_joint1", "robot/gripper/gripper_finger_joint2")
            ]
        )
        self.damping, self.iterations = damping, iterations
        self.max_joint_step, self.nullspace_gain = max_joint_step, nullspace_gain
        self._jac = np.zeros((6, model.nv))

    def joint_targets(self, data: mujoco.MjData, pos: np.ndarray, R: np.ndarray) -> np.ndarray:
        """Arm joint positions that put the end-effector site at (pos, R), starting from data."""
        s = self.scratch
        s.qpos[:] = data.qpos
        q = data.qpos[self.qadr].copy()
        target_quat = np.zeros(4)
        mujoco.mju_mat2Quat(target_quat, np.ascontiguousarray(R).ravel())
        for _ in range(self.iterations):
            s.qpos[self.qadr] = q
            mujoco.mj_kinematics(self.model, s)
            mujoco.mj_comPos(self.model, s)
            err = np.zeros(6)
            err[:3] = pos - s.site_xpos[self.site]
            cur = np.zeros(4)
            mujoco.mju_mat2Quat(cur, s.site_xmat[self.site])
            neg = np.zeros(4)
            mujoco.mju_negQuat(neg, cur)
            dq_ = np.zeros(4)
            mujoco.mju_mulQuat(dq_, target_quat, neg)
            mujoco.mju_quat2Vel(err[3:], dq_, 1.0)
            mujoco.mj_jacSite(self.model, s, self._jac[:3], self._jac[3:], self.site)
            J = self._jac[:, self.dadr]
            # Damped least squares, dq = J^T (J J^T + l^2 I)^-1 err, with a null-space pull
            # toward the home posture (projector I - J^T (J J^T + l^2 I)^-1 J) so the elbow
            # stays where the expert expects it. One solve serves both.
            A = np.linalg.solve(J @ J.T + (self.damping**2) * np.eye(6), np.column_stack([err, J]))
            dq = J.T @ A[:, 0]
            dq += (np.eye(7) - J.T @ A[:, 1:]) @ (self.nullspace_gain * (HOME_QPOS - q))
            q = np.clip(q + np.clip(dq, -self.max_joint_step, self.max_joint_step), self.lo, self.hi)
        return q

    def apply(self, data: mujoco.MjData, action: np.ndarray) -> None:
        """Set the servo targets of arm and gripper for one control step."""
        action = np.asarray(action, float)
        if action.shape != (ACTION_DIM,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action must be {ACTION_DIM} finite numbers, got shape {action.shape}")
        q = self.joint_targets(data, action[:3], rot6d_to_mat(action[3:9]))
        data.ctrl[self.arm_act] = q
        opening = FINGER_OPEN * (1.0 - np.clip(action[9], 0.0, 1.0))
        data.ctrl[self.finger_act] = [opening, -opening]

    def eef_pose(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        """Current end-effector site position and rotation matrix."""
        return data.site_xpos[self.site].copy(), data.site_xmat[self.site].reshape(3, 3).copy()

"""Render throughput: simgen versus robosuite's Lift and versus the bare MuJoCo limit.

Prints, from one run on one machine:
  simgen    control steps/s of `simgen render --task pick` (front + wrist depth, 128x128,
            no RGB, --workers 1), writing the Zarr store included (start-up excluded: timed
            from the first finished episode);
  robosuite robosuite 1.5.2 Lift `env.step` with the same two cameras' depth at 128x128 at its
            default settings (it renders RGB and depth);
  bare      `mj_step` sub-steps + `mujoco.Renderer` depth of the same two cameras on simgen's
            own scene with the same render settings, replaying the servo targets of the same
            expert episodes open loop: same motion and contacts, nothing else, nothing written;
and the ratios (targets: simgen/robosuite >= 5, simgen/bare >= 0.85). The measurements are
interleaved over `--rounds` rounds, ratios taken within each round, and the median reported.
Also reports the depth error caused by decimating the robot's visual meshes, against the full
meshes, over the same robot states (mean and 99th percentile, millimetres).

    python bench/render_throughput.py [--episodes 24] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from plumbing.procs import WORKER_ENV
from simgen.render import depth_renderer
from simgen.runner import RenderConfig, render_dataset
from simgen.scene import DEFAULT_MESH_DETAIL
from tasks import make_env

CAMS = ["front", "wrist"]


def bench_simgen(episodes: int) -> float:
    cfg = RenderConfig(task="pick", episodes=episodes, seed=1000, cameras=tuple(CAMS), rgb=False)
    with tempfile.TemporaryDirectory() as tmp:
        s = render_dataset(cfg, os.path.join(tmp, "b.zarr"), progress=False)
    return s["steady_steps_per_s"]


def bench_robosuite(steps: int) -> float:
    import robosuite

    env = robosuite.make(
        "Lift",
        robots="Panda",
        has_renderer=False,
        has_offscreen_renderer=True,
        use_camera_obs=True,
        camera_names=["agentview", "robot0_eye_in_hand"],
        camera_heights=128,
        camera_widths=128,
        camera_depths=True,
    )
    env.reset()
    action = np.zeros(env.action_dim)
    env.step(action)
    t = time.perf_counter()
    for _ in range(steps):
        obs, *_ = env.step(action)
    rate = steps / (time.perf_counter() - t)
    for cam in ("agentview", "robot0_eye_in_hand"):  # it really rendered depth
        assert obs[f"{cam}_depth"].shape == (128, 128, 1) and obs[f"{cam}_depth"].std() > 0
    env.close()
    return rate


def bench_bare(steps: int) -> float:
    """The same physics and images as simgen's pick episodes with nothing else: the joint
    servo targets of expert episodes are recorded first (untimed), then replayed open loop
    with `mj_step` sub-steps and a plain `mujoco.Renderer` depth render of each camera."""
    import mujoco  # after simgen, which sets MUJOCO_GL

    env = make_env("pick", CAMS)
    m, d = env.model, env.data
    episodes, recorded, seed = [], 0, 0
    while recorded < steps:
        env.reset(seed)
        expert = env.task.make_expert(env, np.random.default_rng([seed, 1]))
        ctrls = []
        for _ in range(env.task.max_steps):
            env.controller.apply(d, expert(env))
            ctrls.append(d.ctrl.copy())
            env.step_physics()
            if env.success():
                break
        episodes.append((seed, ctrls))
        recorded += len(ctrls)
        seed += 1
    r = depth_renderer(m, 128, 128)
    r.enable_depth_rendering()
    elapsed = 0.0
    for seed, ctrls in episodes:
        env.reset(seed)
        t = time.perf_counter()
        for ctrl in ctrls:
            d.ctrl[:] = ctrl
            for _ in range(env.n_substeps):
                mujoco.mj_step(m, d)
            for c in CAMS:
                r.update_scene(d, c, scene_option=env.renderer.option)
                r.render()
        elapsed += time.perf_counter() - t
    r.close()
    env.close()
    return recorded / elapsed


def decimation_error(episodes: int = 3) -> dict:
    """Depth of decimated versus full robot meshes over the states of a few expert episodes."""
    import mujoco

    full = make_env("pick", CAMS, seg=True, mesh_detail=1.0)
    dec = make_env("pick", CAMS, mesh_detail=DEFAULT_MESH_DETAIL)
    faces = {}
    for name, e in (("full", full), ("decimated", dec)):
        m = e.model
        faces[name] = int(
            sum(
                m.mesh_facenum[m.geom_dataid[g]]
                for g in range(m.ngeom)
                if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH and m.geom_group[g] == 1
            )
        )
    errs_robot, errs_all = [], []
    for seed in range(episodes):
        # Roll the expert out in the full-mesh env; mirror its state into the decimated one.
        full.reset(seed)
        dec.reset(seed)
        expert = full.task.make_expert(full, np.random.default_rng([seed, 1]))
        for _ in range(40):
            dec.data.qpos[:] = full.data.qpos
            mujoco.mj_forward(dec.model, dec.data)
            a, b = full.renderer.render(full.data), dec.renderer.render(dec.data)
            for c in CAMS:
                da, db = a[f"{c}_depth"].astype(float), b[f"{c}_depth"].astype(float)
                both = (da > 0) & (db > 0)
                robot = both & np.isin(a[f"{c}_seg"], (3, 4))
                diff = np.abs(da - db) * 1000
                errs_all.append(diff[both])
                errs_robot.append(diff[robot])
            full.step(expert(full))
    full.close()
    dec.close()
    ea, er = np.concatenate(errs_all), np.concatenate(errs_robot)
    return {
        "faces_full": faces["full"],
        "faces_decimated": faces["decimated"],
        "all_mean_mm": ea.mean(),
        "all_p99_mm": np.percentile(ea, 99),
        "robot_mean_mm": er.mean(),
        "robot_p99_mm": np.percentile(er, 99),
    }


MEASURES = {"simgen": bench_simgen, "robosuite": bench_robosuite, "bare": bench_bare}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=24, help="pick episodes per simgen round")
    ap.add_argument("--steps", type=int, default=300, help="steps per robosuite / bare round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--measure", choices=list(MEASURES), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:  # child process: one measurement, printed as a number
        fn = MEASURES[args.measure]
        print(fn(args.episodes if args.measure == "simgen" else args.steps))
        return
    # The bare limit runs both in the default environment and in the single-threaded one that
    # simgen's render workers use; the faster counts, so the ratio is not flattered. Rounds
    # interleave the measurements; each round's ratios come from measurements minutes apart at
    # most, and the median over rounds is reported (this machine's speed drifts by +-15 %).
    runs = [("simgen", {}), ("robosuite", {}), ("bare", {}), ("bare (1 thread)", WORKER_ENV)]
    rows = []
    for r in range(args.rounds):
        rates = {}
        for label, extra_env in runs:
            name = label.split()[0]
            # Each measurement in a fresh process: GL contexts and caches never carry over.
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--measure",
                    name,
                    "--episodes",
                    str(args.episodes),
                    "--steps",
                    str(args.steps),
                ],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, **extra_env},
            ).stdout
            rates[label] = float(out.strip().splitlines()[-1])
        bare = max(rates["bare"], rates["bare (1 thread)"])
        row = {
            "simgen": rates["simgen"],
            "robosuite": rates["robosuite"],
            "bare": bare,
            "vs_robosuite": rates["simgen"] / rates["robosuite"],
            "vs_bare": rates["simgen"] / bare,
        }
        rows.append(row)
        print(
            f"round {r + 1}: simgen {row['simgen']:6.1f}  robosuite {row['robosuite']:5.1f}  "
            f"bare {rates['bare']:6.1f} / {rates['bare (1 thread)']:6.1f} (1 thread) steps/s   "
            f"simgen/robosuite {row['vs_robosuite']:5.2f}x  simgen/bare {row['vs_bare']:.2f}",
            flush=True,
        )
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    print()
    print(f"two cameras (front, wrist), depth 128x128, median of {args.rounds} rounds:")
    print(f"  simgen render (incl. writing)   {med['simgen']:8.1f} steps/s")
    print(f"  robosuite Lift env.step         {med['robosuite']:8.1f} steps/s")
    print(f"  bare mj_step + Renderer depth   {med['bare']:8.1f} steps/s")
    print(f"  simgen / robosuite  {med['vs_robosuite']:6.2f}x   (target >= 5)")
    print(
        f"  simgen / bare       {med['vs_bare']:6.2f}    (target >= 0.85; per round "
        f"{min(r['vs_bare'] for r in rows):.2f} to {max(r['vs_bare'] for r in rows):.2f})"
    )
    e = decimation_error()
    print(
        f"mesh decimation: robot visual faces {e['faces_full']} -> {e['faces_decimated']}; depth "
        f"error vs full meshes: robot pixels mean {e['robot_mean_mm']:.2f} mm, p99 "
        f"{e['robot_p99_mm']:.1f} mm; all pixels mean {e['all_mean_mm']:.3f} mm, p99 "
        f"{e['all_p99_mm']:.2f} mm"
    )


if __name__ == "__main__":
    main()

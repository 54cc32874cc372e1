"""phonion.md — trajectories (readers, the H5MD store), velocities, and (later) MD and transport.

Public entry points::

    from phonion.md import Trajectory, read_trajectory
    traj = read_trajectory(["run1/XDATCAR.gz", "run2/XDATCAR.gz"], timestep_fs=2.0)
"""

from phonion.md.io import read_trajectory
from phonion.md.trajectory import Trajectory, TrajectoryError, concatenate

__all__ = ["Trajectory", "TrajectoryError", "concatenate", "read_trajectory"]

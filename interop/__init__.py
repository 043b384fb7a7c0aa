"""Other frameworks' dataset formats: robomimic / MimicGen HDF5, LeRobot v3, DP3 zarr (reading their
depth, writing noisy depth beside it, exporting simgen stores to them)."""

"""`realdiff capture`: camera tracking, TSDF fusion and registration refinement, from depth alone."""

"""Running the pipeline on this machine: TFX's BeamDagRunner with SQLite ML Metadata,
heavy nodes in processes of their own, the console's node lines, the log file and the
run summary."""

"""Outputs a person looks at: QC pictures, tables and files for 3D Slicer."""

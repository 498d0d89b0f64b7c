//! Metadata file formats (placeholder; see the scanner work).

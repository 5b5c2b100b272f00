//! Tests of the per-metric pipeline.

//! TODO(skeleton): lab

//! TODO(skeleton): socket engine

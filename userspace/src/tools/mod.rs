//! TODO(skeleton): lab tools

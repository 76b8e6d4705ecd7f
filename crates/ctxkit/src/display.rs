//! How a context prints: the chain of derivations that built it, as Go's `String()` prints it
//! ([S2](crate::guarantees#s2)), without recursion however long the chain
//! ([S23](crate::guarantees#s23)).

use std::fmt;
use std::sync::Arc;

use crate::context::Context;
use crate::time::{self, Nanos};
use crate::tree::{Kind, Label, Layer, Node, Pair};

/// One link of a context's chain.
enum Link<'a> {
    Background,
    Node(&'a Node),
    Layer(&'a Layer),
}

/// The last derivation that made `pair`, and the context it was derived from.
fn last_link(pair: &Pair) -> (Link<'_>, Option<&Pair>) {
    fn node_link(n: &Arc<Node>) -> (Link<'_>, Option<&Pair>) {
        match n.kind() {
            Kind::Todo => (Link::Node(n), None),
            _ => (Link::Node(n), Some(n.parent())),
        }
    }
    match (&pair.node, &pair.layer) {
        (None, None) => (Link::Background, None),
        (None, Some(layer)) => (Link::Layer(layer), layer.display_parent()),
        (Some(node), None) => node_link(node),
        (Some(node), Some(layer)) => match layer.display_parent() {
            // A layer made on top of this node is newer than it.
            Some(parent) if parent.node.as_ref().is_some_and(|p| Arc::ptr_eq(p, node)) => {
                (Link::Layer(layer), Some(parent))
            }
            _ => node_link(node),
        },
    }
}

/// Display's work list: what is left to print, so that neither a long chain nor merges nested
/// in merges recurse.
enum Piece {
    /// The whole chain that built this context.
    Chain(Pair),
    /// Only the last link of this context.
    Link(Pair),
    Text(&'static str),
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut work = vec![Piece::Chain(self.pair().clone())];
        while let Some(piece) = work.pop() {
            match piece {
                Piece::Text(text) => f.write_str(text)?,
                Piece::Chain(pair) => {
                    // Pushed tip first, so the root is printed first.
                    let mut at = Some(pair);
                    while let Some(pair) = at {
                        at = last_link(&pair).1.cloned();
                        work.push(Piece::Link(pair));
                    }
                }
                Piece::Link(pair) => match last_link(&pair).0 {
                    Link::Background => f.write_str("context.Background")?,
                    Link::Layer(layer) => fmt_layer(layer, f)?,
                    Link::Node(node) => {
                        // The levels folded into this node print as they were made (N13).
                        for _ in 0..node.folded_levels() {
                            f.write_str(".WithCancel")?
                        }
                        match node.kind() {
                            Kind::Todo => f.write_str("context.TODO")?,
                            Kind::Cancel => f.write_str(".WithCancel")?,
                            Kind::WithoutCancel => f.write_str(".WithoutCancel")?,
                            Kind::Deadline => {
                                f.write_str(".WithDeadline([")?;
                                fmt_time_left(node.deadline(), pair.now(), f)?;
                                f.write_str("])")?
                            }
                            Kind::Merge => {
                                let other = node.merged_with().expect("a merge has two parents");
                                f.write_str(".Merge(")?;
                                work.push(Piece::Text(")"));
                                work.push(Piece::Chain(other));
                            }
                        }
                    }
                },
            }
        }
        Ok(())
    }
}

/// A value layer's link: `.WithValue(key, Type)`, `.WithValue(Type)` for a value keyed by its
/// type, `.WithClock`, `.WithName("name")`; nothing for a merge's layer (its node prints the
/// link).
fn fmt_layer(layer: &Layer, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let Some((label, type_name)) = layer.label() else {
        return Ok(());
    };
    match label {
        Label::Key(name) => {
            write!(f, ".WithValue({name}, ")?;
            fmt_type_name(type_name, f)?;
            f.write_str(")")
        }
        Label::Type => {
            f.write_str(".WithValue(")?;
            fmt_type_name(type_name, f)?;
            f.write_str(")")
        }
        Label::Clock => f.write_str(".WithClock"),
        // Escaped as a Rust string literal: a name of any characters prints on one line.
        Label::Name => write!(f, ".WithName({:?})", layer.name().unwrap_or_default()),
    }
}

/// The time left until `deadline`, as Go prints it: negative once it has passed. On a
/// manual clock both readings are the clock's, so the figure is exact (`5s`, `-2s`).
fn fmt_time_left(deadline: Nanos, now: Nanos, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if deadline >= now {
        write!(f, "{:?}", time::remaining(deadline, now))
    } else {
        write!(f, "-{:?}", time::remaining(now, deadline))
    }
}

/// A type name without its module paths: `alloc::vec::Vec<my_app::TraceId>` prints as
/// `Vec<TraceId>`.
fn fmt_type_name(name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let is_path = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    let mut rest = name;
    while !rest.is_empty() {
        let end = rest.find(|c| !is_path(c)).unwrap_or(rest.len());
        let (path, after) = rest.split_at(end);
        f.write_str(path.rsplit("::").next().unwrap_or(path))?;
        let sep = after.find(is_path).unwrap_or(after.len());
        f.write_str(&after[..sep])?;
        rest = &after[sep..];
    }
    Ok(())
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("err", &self.err())
            .field("deadline", &self.deadline())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    struct TypeName(&'static str);

    impl fmt::Display for TypeName {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt_type_name(self.0, f)
        }
    }

    #[test]
    fn type_names_print_without_module_paths() {
        let short = |name| TypeName(name).to_string();
        assert_eq!(short("u64"), "u64");
        assert_eq!(short("my_app::TraceId"), "TraceId");
        assert_eq!(
            short("alloc::vec::Vec<alloc::string::String>"),
            "Vec<String>"
        );
        assert_eq!(
            short("core::option::Option<(a::B, &'static c::D)>"),
            "Option<(B, &'static D)>"
        );
        assert_eq!(short("[my::T; 4]"), "[T; 4]");
    }
}

//! Changes of the running configuration made with `fanout ctl`
//! (`add-output`, `remove-output`, `add-flow`, `remove-flow`).
//!
//! Contract: an [`Edit`] changes the text of the running configuration as
//! an operator would change the file (a `[[flow.output]]` or `[[flow]]`
//! table added or taken out, through `toml_edit`, which keeps everything
//! else as written), and the whole text is then validated by
//! [`Config::parse`]: the same rules and the same messages as the file,
//! with the location being the command (`fanout ctl add-output:
//! flow[0].output[2].ttl = 300: ...`) instead of a line of the file. The
//! edited text is never written anywhere: changes made with `fanout ctl`
//! are runtime-only, and a reload returns to the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml_edit::{ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

use super::types::{Config, Error, Location};

/// One field's value, as the configuration writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Field {
    Int(i64),
    Float(f64),
    Str(String),
}

/// The fields of one table, by their names in the configuration.
pub type Fields = BTreeMap<String, Field>;

/// A change of the running configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "edit", rename_all = "snake_case")]
pub enum Edit {
    /// A `[[flow.output]]` table added to the flow named `flow`.
    AddOutput { flow: String, output: Fields },
    /// The output named `output` (as `fanout ctl show` names it) taken out
    /// of the flow named `flow`.
    RemoveOutput { flow: String, output: String },
    /// A `[[flow]]` table added, with its `[[flow.output]]` tables.
    AddFlow { flow: Fields, outputs: Vec<Fields> },
    /// The flow named `flow` taken out.
    RemoveFlow { flow: String },
}

impl Edit {
    /// The command that asks for it, the location of its errors.
    pub fn command(&self) -> &'static str {
        match self {
            Edit::AddOutput { .. } => "fanout ctl add-output",
            Edit::RemoveOutput { .. } => "fanout ctl remove-output",
            Edit::AddFlow { .. } => "fanout ctl add-flow",
            Edit::RemoveFlow { .. } => "fanout ctl remove-flow",
        }
    }

    fn at(&self) -> Location {
        Location {
            path: PathBuf::from(self.command()),
            line: None,
            column: None,
        }
    }

    /// Applies the edit to `text`, the running configuration (read from
    /// `path`), and validates the result as the file would be (the
    /// environment's `[engine]` overrides included): the edited text and
    /// its configuration, or the file-style error located at the command.
    pub fn apply(&self, text: &str, path: &Path) -> Result<(String, Config), Error> {
        let current = Config::from_text(text, path)?;
        let at = self.at();
        let mut doc: DocumentMut =
            text.parse()
                .map_err(|e: toml_edit::TomlError| Error::Syntax {
                    at: at.clone(),
                    message: e.message().to_owned(),
                })?;
        let no_flow = |flow: &str| Error::InvalidValue {
            at: at.clone(),
            field: "--flow".into(),
            value: format!("{flow:?}"),
            reason: format!(
                "no such flow in the running configuration (its flows: {})",
                names(current.flows.iter().map(|f| f.name.as_str()))
            ),
        };
        let find = |flow: &str| {
            current
                .flows
                .iter()
                .position(|f| f.name == flow)
                .ok_or_else(|| no_flow(flow))
        };
        match self {
            Edit::AddOutput { flow, output } => {
                let i = find(flow)?;
                let table = flows(&mut doc, &at)?
                    .get_mut(i)
                    .ok_or_else(|| no_flow(flow))?;
                match table.get_mut("output") {
                    None => {
                        let mut outputs = ArrayOfTables::new();
                        outputs.push(to_table(output));
                        table.insert("output", Item::ArrayOfTables(outputs));
                    }
                    Some(Item::ArrayOfTables(outputs)) => outputs.push(to_table(output)),
                    Some(Item::Value(Value::Array(outputs))) => {
                        outputs.push(Value::InlineTable(to_inline(output)));
                    }
                    Some(_) => return Err(unwritable(&at, format!("flow[{i}].output"))),
                }
            }
            Edit::RemoveOutput { flow, output } => {
                let i = find(flow)?;
                let configured = &current.flows[i].outputs;
                let j = configured
                    .iter()
                    .position(|o| o.name == *output)
                    .ok_or_else(|| Error::InvalidValue {
                        at: at.clone(),
                        field: "--output".into(),
                        value: format!("{output:?}"),
                        reason: format!(
                            "flow {flow:?} has no such output (its outputs: {})",
                            names(configured.iter().map(|o| o.name.as_str()))
                        ),
                    })?;
                let table = flows(&mut doc, &at)?
                    .get_mut(i)
                    .ok_or_else(|| no_flow(flow))?;
                match table.get_mut("output") {
                    Some(Item::ArrayOfTables(outputs)) if j < outputs.len() => {
                        outputs.remove(j);
                    }
                    Some(Item::Value(Value::Array(outputs))) if j < outputs.len() => {
                        outputs.remove(j);
                    }
                    _ => return Err(unwritable(&at, format!("flow[{i}].output"))),
                }
            }
            Edit::AddFlow { flow, outputs } => {
                let mut table = to_table(flow);
                if !outputs.is_empty() {
                    let mut all = ArrayOfTables::new();
                    for o in outputs {
                        all.push(to_table(o));
                    }
                    table.insert("output", Item::ArrayOfTables(all));
                }
                match doc.get_mut("flow") {
                    None => {
                        let mut all = ArrayOfTables::new();
                        all.push(table);
                        doc.insert("flow", Item::ArrayOfTables(all));
                    }
                    Some(Item::ArrayOfTables(all)) => all.push(table),
                    Some(_) => return Err(unwritable(&at, "flow".into())),
                }
            }
            Edit::RemoveFlow { flow } => {
                let i = find(flow)?;
                let all = flows(&mut doc, &at)?;
                if i >= all.len() {
                    return Err(no_flow(flow));
                }
                all.remove(i);
            }
        }
        let edited = doc.to_string();
        let config = Config::from_text(&edited, path).map_err(|e| e.relocated(&at))?;
        Ok((edited, config))
    }
}

/// `"a", "b"`, or `none`.
fn names<'a>(all: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<String> = all.map(|n| format!("{n:?}")).collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

/// The `[[flow]]` tables of the document.
fn flows<'d>(doc: &'d mut DocumentMut, at: &Location) -> Result<&'d mut ArrayOfTables, Error> {
    match doc.get_mut("flow") {
        Some(Item::ArrayOfTables(all)) => Ok(all),
        _ => Err(unwritable(at, "flow".into())),
    }
}

/// A configuration written in a form `fanout ctl` does not edit.
fn unwritable(at: &Location, field: String) -> Error {
    Error::InvalidField {
        at: at.clone(),
        field,
        reason: "written in a form fanout ctl cannot edit (use [[flow]] and [[flow.output]] \
                 tables), or edit the file and reload"
            .into(),
    }
}

fn value(f: &Field) -> Value {
    match f {
        Field::Int(n) => Value::from(*n),
        Field::Float(x) => Value::from(*x),
        Field::Str(s) => Value::from(s.as_str()),
    }
}

fn to_table(fields: &Fields) -> Table {
    let mut t = Table::new();
    for (k, v) in fields {
        t.insert(k, Item::Value(value(v)));
    }
    t
}

fn to_inline(fields: &Fields) -> InlineTable {
    let mut t = InlineTable::new();
    for (k, v) in fields {
        t.insert(k, value(v));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# the operator's comment stays
[engine]
mode = \"socket\"

[[flow]]
name = \"tv\"
interface = \"in0\"
group = \"239.1.1.1\"
port = 5000

  [[flow.output]]
  unicast = \"10.0.0.2:6000\"

  [[flow.output]]
  name = \"m\"
  multicast = \"239.2.2.2:7000\"
  interface = \"out0\"

[[flow]]
name = \"radio\"
interface = \"in0\"
group = \"239.1.1.2\"
port = 5000
output = [{ unicast = \"10.0.0.3:6000\" }]
";

    fn fields(kv: &[(&str, Field)]) -> Fields {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn s(v: &str) -> Field {
        Field::Str(v.to_owned())
    }

    fn apply(edit: &Edit) -> Result<Config, String> {
        edit.apply(FILE, Path::new("/etc/fanout/fanout.toml"))
            .map(|(text, config)| {
                assert!(
                    text.starts_with("# the operator's comment stays\n"),
                    "{text}"
                );
                config
            })
            .map_err(|e| e.to_string())
    }

    fn outputs(c: &Config, flow: usize) -> Vec<String> {
        c.flows[flow]
            .outputs
            .iter()
            .map(|o| o.name.clone())
            .collect()
    }

    #[test]
    fn outputs_are_added_and_removed_in_either_form() {
        let add = |flow: &str| Edit::AddOutput {
            flow: flow.into(),
            output: fields(&[
                ("unicast", s("10.0.0.9:6000")),
                ("name", s("sub-9")),
                ("ttl", Field::Int(9)),
            ]),
        };
        let c = apply(&add("tv")).unwrap();
        assert_eq!(outputs(&c, 0), ["unicast 10.0.0.2:6000", "m", "sub-9"]);
        assert_eq!(c.flows[0].outputs[2].ttl, 9);
        let c = apply(&add("radio")).unwrap();
        assert_eq!(outputs(&c, 1), ["unicast 10.0.0.3:6000", "sub-9"]);

        let c = apply(&Edit::RemoveOutput {
            flow: "tv".into(),
            output: "unicast 10.0.0.2:6000".into(),
        })
        .unwrap();
        assert_eq!(outputs(&c, 0), ["m"]);
        let c = apply(&Edit::RemoveOutput {
            flow: "radio".into(),
            output: "unicast 10.0.0.3:6000".into(),
        });
        // The file's own rule for a flow without outputs.
        assert!(c.is_err(), "{c:?}");
    }

    #[test]
    fn flows_are_added_and_removed() {
        let c = apply(&Edit::AddFlow {
            flow: fields(&[
                ("name", s("news")),
                ("interface", s("in0")),
                ("group", s("239.1.1.3")),
                ("port", Field::Int(5002)),
                ("max_mbps", Field::Float(50.5)),
            ]),
            outputs: vec![fields(&[("unicast", s("10.0.0.4:6000"))])],
        })
        .unwrap();
        let names: Vec<&str> = c.flows.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["tv", "radio", "news"]);
        assert_eq!(outputs(&c, 2), ["unicast 10.0.0.4:6000"]);
        let c = apply(&Edit::RemoveFlow { flow: "tv".into() }).unwrap();
        assert_eq!(c.flows.len(), 1);
        assert_eq!(c.flows[0].name, "radio");
    }

    /// A bad change says what the file would, located at the command.
    #[test]
    fn bad_changes_get_the_files_messages() {
        let bad = |edit: Edit| {
            let e = edit
                .apply(FILE, Path::new("/etc/fanout/fanout.toml"))
                .unwrap_err();
            assert_eq!(e.exit_code(), 2);
            e.to_string()
        };
        assert_eq!(
            bad(Edit::AddOutput {
                flow: "tv".into(),
                output: fields(&[("unicast", s("10.0.0.9:6000")), ("ttl", Field::Int(300))]),
            }),
            "error: fanout ctl add-output: flow[0].output[2].ttl = 300: out of range \
             (1..=255)"
        );
        let dup = bad(Edit::AddOutput {
            flow: "tv".into(),
            output: fields(&[("unicast", s("10.0.0.9:6000")), ("name", s("m"))]),
        });
        assert!(
            dup.starts_with("error: fanout ctl add-output: flow[0].output[2]"),
            "{dup}"
        );
        assert_eq!(
            bad(Edit::AddOutput {
                flow: "nope".into(),
                output: fields(&[("unicast", s("10.0.0.9:6000"))]),
            }),
            "error: fanout ctl add-output: --flow = \"nope\": no such flow in the running \
             configuration (its flows: \"tv\", \"radio\")"
        );
        assert_eq!(
            bad(Edit::RemoveOutput {
                flow: "tv".into(),
                output: "x".into(),
            }),
            "error: fanout ctl remove-output: --output = \"x\": flow \"tv\" has no such output \
             (its outputs: \"unicast 10.0.0.2:6000\", \"m\")"
        );
        let unknown = bad(Edit::AddOutput {
            flow: "tv".into(),
            output: fields(&[("unicast", s("10.0.0.9:6000")), ("colour", s("red"))]),
        });
        assert!(unknown.contains("colour"), "{unknown}");
        let same = bad(Edit::AddFlow {
            flow: fields(&[
                ("name", s("tv")),
                ("interface", s("in0")),
                ("group", s("239.1.1.9")),
                ("port", Field::Int(5000)),
            ]),
            outputs: vec![fields(&[("unicast", s("10.0.0.4:6000"))])],
        });
        assert!(
            same.starts_with("error: fanout ctl add-flow: flow[2]"),
            "{same}"
        );
    }
}

//! The subset of YAML that tcp-exporter's configuration files need, and
//! nothing more: block mappings and block sequences nested by indentation,
//! flow sequences of scalars (`[a, b]`), plain, single- and double-quoted
//! scalars, `#` comments, `---` and `...`. Anchors, aliases, tags, flow
//! mappings and block scalars (`|`, `>`) are refused, naming the line, as
//! are tabs in indentation and repeated keys.
//!
//! It owns turning text into a tree of strings with line numbers; what the
//! keys mean is up to the caller (`--port-names` files, `--web.config.file`).

use std::fmt;

/// A node and the line (1-based) it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub line: usize,
    pub node: Node,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// No value: `key:` with nothing under it, `~`, `null`, or an empty
    /// document.
    Null,
    Scalar(String),
    List(Vec<Item>),
    /// Keys in the order written.
    Map(Vec<(String, Item)>),
}

impl Node {
    /// What the node is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "nothing",
            Node::Scalar(_) => "a value",
            Node::List(_) => "a list",
            Node::Map(_) => "a map",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct YamlError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, YamlError> {
    Err(YamlError {
        line,
        message: message.into(),
    })
}

/// One line that holds something: its number, indentation, and content
/// without the comment.
struct Line<'a> {
    number: usize,
    indent: usize,
    text: &'a str,
}

/// Parses a document.
pub fn parse(text: &str) -> Result<Item, YamlError> {
    let mut lines = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let number = n + 1;
        let content = strip_comment(raw).trim_end();
        let body = content.trim_start_matches(' ');
        if body.is_empty() || content == "---" || content == "..." {
            continue;
        }
        if body.starts_with('\t') {
            return err(
                number,
                "a tab in the indentation (YAML indents with spaces)",
            );
        }
        if content.starts_with("--- ") {
            return err(
                number,
                "content after `---`: start the document on the next line",
            );
        }
        lines.push(Line {
            number,
            indent: content.len() - body.len(),
            text: body,
        });
    }
    let Some(first) = lines.first() else {
        return Ok(Item {
            line: 1,
            node: Node::Null,
        });
    };
    let mut at = 0;
    let root = block(&lines, &mut at, first.indent)?;
    if let Some(extra) = lines.get(at) {
        return err(
            extra.number,
            "does not fit the structure above it (check its indentation and dash)",
        );
    }
    Ok(root)
}

/// Parses the block that starts at `lines[*at]`, indented by `indent`.
fn block(lines: &[Line<'_>], at: &mut usize, indent: usize) -> Result<Item, YamlError> {
    let first = &lines[*at];
    if is_item(first.text) {
        list(lines, at, indent)
    } else if split_key(first.text)?.is_some() {
        map(lines, at, indent)
    } else {
        // A lone scalar (or flow list) as the whole block.
        let item = inline(first.number, first.text)?;
        *at += 1;
        if let Some(next) = lines.get(*at) {
            if next.indent >= indent {
                return err(next.number, "expected `key: value` here");
            }
        }
        Ok(item)
    }
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

fn list(lines: &[Line<'_>], at: &mut usize, indent: usize) -> Result<Item, YamlError> {
    let line = lines[*at].number;
    let mut items = Vec::new();
    while let Some(l) = lines.get(*at) {
        if l.indent < indent {
            break;
        }
        if l.indent > indent {
            return err(l.number, "indented more than the list item above");
        }
        if !is_item(l.text) {
            break;
        }
        let rest = l.text[1..].trim_start();
        if rest.is_empty() || split_key(rest)?.is_some() || is_item(rest) {
            return err(
                l.number,
                "only plain values can be list items (no nested lists or maps)",
            );
        }
        items.push(inline(l.number, rest)?);
        *at += 1;
    }
    Ok(Item {
        line,
        node: Node::List(items),
    })
}

fn map(lines: &[Line<'_>], at: &mut usize, indent: usize) -> Result<Item, YamlError> {
    let line = lines[*at].number;
    let mut entries: Vec<(String, Item)> = Vec::new();
    // Whether the last key had its value on its own line.
    let mut inline_value = false;
    while let Some(l) = lines.get(*at) {
        if l.indent < indent {
            break;
        }
        if l.indent > indent {
            return err(
                l.number,
                if inline_value {
                    "indented more than the line above, whose key already has a value"
                } else {
                    "indented unlike the keys above it"
                },
            );
        }
        if is_item(l.text) {
            return err(l.number, "a list item where `key: value` was expected");
        }
        let Some((key, rest)) = split_key(l.text)? else {
            return err(l.number, "expected `key: value`");
        };
        if entries.iter().any(|(k, _)| *k == key) {
            return err(l.number, format!("the key {key:?} is repeated"));
        }
        *at += 1;
        inline_value = !rest.is_empty();
        let value = if inline_value {
            inline(l.number, rest)?
        } else {
            match lines.get(*at) {
                // The value is the block below: more indented, or a list at
                // the key's own indentation (which YAML allows).
                Some(next)
                    if next.indent > indent || (next.indent == indent && is_item(next.text)) =>
                {
                    // Messages about the value name the key's line.
                    let mut value = block(lines, at, next.indent)?;
                    value.line = l.number;
                    value
                }
                _ => Item {
                    line: l.number,
                    node: Node::Null,
                },
            }
        };
        entries.push((key, value));
    }
    Ok(Item {
        line,
        node: Node::Map(entries),
    })
}

/// Splits `key: rest` (the colon followed by a space or the line's end);
/// `None` when the line is not a mapping entry.
fn split_key(text: &str) -> Result<Option<(String, &str)>, YamlError> {
    let bytes = text.as_bytes();
    let key_end = if matches!(bytes.first(), Some(b'"' | b'\'')) {
        match closing_quote(text) {
            Some(end) => end + 1,
            None => return Ok(None),
        }
    } else {
        0
    };
    let mut i = key_end;
    while i < bytes.len() {
        if bytes[i] == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ') {
            let raw_key = text[..i].trim_end();
            if raw_key.starts_with(['[', '{']) {
                return Ok(None);
            }
            let key = scalar(0, raw_key)?;
            return Ok(Some((key, text[i + 1..].trim())));
        }
        if key_end > 0 && bytes[i] != b' ' {
            // Something after a quoted key other than its colon.
            return Ok(None);
        }
        i += 1;
    }
    Ok(None)
}

/// The byte index of the quote that closes the one `text` starts with.
fn closing_quote(text: &str) -> Option<usize> {
    let q = text.as_bytes()[0];
    let b = text.as_bytes();
    let mut i = 1;
    while i < b.len() {
        if q == b'\'' && b[i] == b'\'' {
            if b.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Some(i);
        }
        if q == b'"' && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if q == b'"' && b[i] == b'"' {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// A value written on the same line as its key or dash.
fn inline(line: usize, text: &str) -> Result<Item, YamlError> {
    let node = if let Some(body) = text.strip_prefix('[') {
        let Some(body) = body.strip_suffix(']') else {
            return err(line, "a flow list must close on its own line");
        };
        let mut items = Vec::new();
        for part in split_flow(line, body)? {
            if part.starts_with(['[', '{']) {
                return err(line, "only plain values can be list items");
            }
            items.push(Item {
                line,
                node: Node::Scalar(scalar(line, part)?),
            });
        }
        Node::List(items)
    } else if text.starts_with('{') {
        return err(
            line,
            "flow maps (`{...}`) are not supported: write one key per line",
        );
    } else if text.starts_with(['|', '>']) {
        return err(line, "block scalars (`|`, `>`) are not supported");
    } else if text.starts_with(['&', '*', '!']) {
        return err(line, "anchors, aliases and tags are not supported");
    } else if matches!(text, "~" | "null" | "Null" | "NULL") {
        Node::Null
    } else {
        Node::Scalar(scalar(line, text)?)
    };
    Ok(Item { line, node })
}

/// The parts of a flow list's body, split at commas outside quotes.
fn split_flow(line: usize, body: &str) -> Result<Vec<&str>, YamlError> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quote = None;
    for (i, c) in body.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == ',' => {
                parts.push(body[start..i].trim());
                start = i + 1;
            }
            None => {}
        }
    }
    if quote.is_some() {
        return err(line, "unbalanced quotes");
    }
    let last = body[start..].trim();
    if !last.is_empty() || !parts.is_empty() {
        parts.push(last);
    }
    if parts.iter().any(|p| p.is_empty()) {
        return err(line, "an empty item in a flow list");
    }
    Ok(parts)
}

/// A scalar's text: quotes removed, escapes read.
fn scalar(line: usize, text: &str) -> Result<String, YamlError> {
    match text.as_bytes().first() {
        Some(b'\'') | Some(b'"') => {
            if closing_quote(text) != Some(text.len() - 1) || text.len() < 2 {
                return err(line, "unbalanced quotes");
            }
            let body = &text[1..text.len() - 1];
            if text.starts_with('\'') {
                Ok(body.replace("''", "'"))
            } else {
                unescape(line, body)
            }
        }
        _ => {
            if text.contains(": ") || text.ends_with(':') {
                return err(line, "a `: ` inside a plain value: quote it");
            }
            Ok(text.to_string())
        }
    }
}

fn unescape(line: usize, body: &str) -> Result<String, YamlError> {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('\\') => '\\',
            Some('"') => '"',
            Some('/') => '/',
            Some('n') => '\n',
            Some('t') => '\t',
            Some('r') => '\r',
            Some('0') => '\0',
            other => {
                return err(
                    line,
                    format!(
                        "the escape \\{} is not supported in double quotes",
                        other.map(String::from).unwrap_or_default()
                    ),
                )
            }
        });
    }
    Ok(out)
}

/// The line up to a `#` that starts a comment (at the start, or after a
/// space, outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev_space => return &line[..i],
            None => {}
        }
        prev_space = c.is_whitespace();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Node {
        Node::Scalar(v.into())
    }

    fn map(item: &Item) -> Vec<(&str, &Node)> {
        match &item.node {
            Node::Map(m) => m.iter().map(|(k, v)| (k.as_str(), &v.node)).collect(),
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn nested_maps_lists_and_quoted_scalars_are_read_with_their_lines() {
        let doc = parse(
            "# web config\n---\ntls_server_config:\n  cert_file: /etc/tls/tls.crt   # cert\n  \
             key_file: \"/etc/tls/key # not a comment\"\n  cipher_suites: [A, 'B, C']\n\
             basic_auth_users:\n  alice: $2y$10$abc\n  'bob''s': \"x\\ty\"\nlist:\n- one\n- 'two'\nempty:\n",
        )
        .unwrap();
        let top = map(&doc);
        assert_eq!(top.len(), 4);
        let Node::Map(tls) = top[0].1 else { panic!() };
        assert_eq!(
            tls[0],
            (
                "cert_file".into(),
                Item {
                    line: 4,
                    node: s("/etc/tls/tls.crt")
                }
            )
        );
        assert_eq!(tls[1].1.node, s("/etc/tls/key # not a comment"));
        assert_eq!(
            tls[2].1.node,
            Node::List(vec![
                Item {
                    line: 6,
                    node: s("A")
                },
                Item {
                    line: 6,
                    node: s("B, C")
                }
            ])
        );
        let Node::Map(users) = top[1].1 else { panic!() };
        assert_eq!(
            users[0],
            (
                "alice".into(),
                Item {
                    line: 8,
                    node: s("$2y$10$abc")
                }
            )
        );
        assert_eq!(users[1].0, "bob's");
        assert_eq!(users[1].1.node, s("x\ty"));
        assert_eq!(
            *top[2].1,
            Node::List(vec![
                Item {
                    line: 11,
                    node: s("one")
                },
                Item {
                    line: 12,
                    node: s("two")
                }
            ])
        );
        assert_eq!(*top[3].1, Node::Null);
    }

    #[test]
    fn an_empty_document_is_null() {
        assert_eq!(parse("# nothing\n\n---\n").unwrap().node, Node::Null);
    }

    #[test]
    fn what_is_outside_the_subset_is_refused_with_its_line() {
        for (text, why) in [
            ("a: 1\n  b: 2\n", "line 2: indented more"),
            ("a:\n\tb: 1\n", "line 2: a tab"),
            ("a: 1\na: 2\n", "line 2: the key \"a\" is repeated"),
            ("a: {b: 1}\n", "line 1: flow maps"),
            ("a: |\n  x\n", "line 1: block scalars"),
            ("a: &x 1\n", "line 1: anchors"),
            ("a: 'x\n", "line 1: unbalanced quotes"),
            ("a: \"\\q\"\n", "line 1: the escape \\q"),
            ("a: b: c\n", "line 1: a `: ` inside"),
            ("a:\n  - x: 1\n", "line 2: only plain values"),
            ("a:\n  b: 1\n c: 2\n", "line 3: indented unlike"),
            ("- a\nb: 1\n", "line 2: does not fit"),
            ("a: [x, , y]\n", "line 1: an empty item"),
            ("a: [x\n", "line 1: a flow list must close"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with(why), "{text:?}: {e}");
        }
    }
}

//! How client commands print what a node answered: `-o table` (aligned columns for people),
//! `-o json` or `-o yaml` (the API's own shape, for scripts).

use serde::Serialize;

use super::ClientError;

/// Output format of the client commands (`-o/--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns (or one line per event for `watch`).
    #[default]
    Table,
    /// The node's JSON, pretty-printed (one compact object per line for `watch`).
    Json,
    /// The node's answer as YAML (one document per event for `watch`).
    Yaml,
}

impl Output {
    /// Prints `value` in this format; `table` renders it for [`Output::Table`].
    pub(super) fn print<T: Serialize>(
        self,
        value: &T,
        table: impl FnOnce(&T) -> String,
    ) -> Result<(), ClientError> {
        let text = match self {
            Self::Table => table(value),
            Self::Json => format!("{}\n", render_json(value, true)?),
            Self::Yaml => render_yaml(value)?,
        };
        print!("{text}");
        Ok(())
    }

    /// Prints one item of a stream: a table line, a compact JSON line or a YAML document.
    pub(super) fn print_item<T: Serialize>(
        self,
        value: &T,
        line: impl FnOnce(&T) -> String,
    ) -> Result<(), ClientError> {
        let text = match self {
            Self::Table => format!("{}\n", line(value)),
            Self::Json => format!("{}\n", render_json(value, false)?),
            Self::Yaml => format!("---\n{}", render_yaml(value)?),
        };
        print!("{text}");
        Ok(())
    }
}

fn render_json(value: &impl Serialize, pretty: bool) -> Result<String, ClientError> {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    text.map_err(|e| ClientError::Usage(format!("cannot render JSON: {e}")))
}

fn render_yaml(value: &impl Serialize) -> Result<String, ClientError> {
    serde_norway::to_string(value)
        .map_err(|e| ClientError::Usage(format!("cannot render YAML: {e}")))
}

/// Left-aligned columns separated by two spaces.
pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\n");
    }

    #[test]
    fn yaml_keeps_the_api_field_names() {
        let value = serde_json::json!({"services": [{"service": "orders", "instances": 2}]});
        let text = render_yaml(&value).unwrap();
        assert_eq!(text, "services:\n- instances: 2\n  service: orders\n");
    }
}

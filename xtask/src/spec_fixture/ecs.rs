//! ECS `fields.csv`: one line per field, `field<TAB>type`, with `<TAB>array` when ECS's
//! normalization says the field is an array.
use anyhow::{bail, Result};

pub(super) fn derive(csv: &str) -> Result<String> {
    let mut lines = Vec::new();
    for (i, line) in csv.lines().enumerate().skip(1) {
        // ECS_Version,Indexed,Field_Set,Field,Type,Level,Normalization,Example,Description:
        // the columns that may hold commas (quoted) come after the ones used.
        let cols: Vec<&str> = line.splitn(8, ',').collect();
        if cols.len() < 8 {
            continue;
        }
        let (version, field, ty, normalization) = (cols[0], cols[3], cols[4], cols[6]);
        if version != "9.4.0" {
            bail!(
                "fields.csv line {}: ECS version {version}, not 9.4.0",
                i + 1
            );
        }
        let array = if normalization.contains("array") {
            "\tarray"
        } else {
            ""
        };
        lines.push(format!("{field}\t{ty}{array}"));
    }
    if lines.len() < 1000 {
        bail!("fields.csv has only {} fields", lines.len());
    }
    lines.sort();
    let mut out = String::from(
        "# ECS 9.4.0 (elastic/ecs generated/csv/fields.csv): field, type, array when normalized \
         as one.\n# Derived by `cargo xtask spec-fixture`; do not edit.\n",
    );
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    Ok(out)
}

//! OCSF 1.8.0: the classes the `ocsf` format writes and every object reachable from them, each
//! attribute resolved as the schema says (the dictionary's definition, overridden by the
//! classes and objects it `extends` and then by its own; `$include`d profiles mark the
//! attributes they add). Lines (tab-separated):
//!
//! - `type  <name>  <base type>`: the dictionary's scalar types;
//! - `class  <name>  <class_uid>  <category_uid>  <caption>`;
//! - `attr  <class|object>/<name>  <attribute>  <type>  <requirement>  <array 0|1>
//!   <profile or ->  <deprecated since or ->  <sibling or ->`;
//! - `enum  <class|object>/<name>  <attribute>  <value>  <caption>`;
//! - `constraint  <class|object>/<name>  <at_least_one|just_one>  <attributes,...>`;
//! - `object  <name>  <deprecated since or ->`.
use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The classes the format writes.
const CLASSES: &[&str] = &["network_activity", "dns_activity", "process_activity"];

/// One attribute as resolved: its merged definition and the profile that adds it.
type Attrs = BTreeMap<String, (Value, Option<String>)>;

struct Schema {
    root: PathBuf,
    dict: Value,
    /// Class name -> file.
    events: BTreeMap<String, PathBuf>,
}

fn read(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Objects merge key by key (so a class's enum adds to the dictionary's); anything else is
/// replaced.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn class_files(dir: &Path, out: &mut BTreeMap<String, PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            class_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            if let Some(name) = read(&path)?["name"].as_str() {
                out.insert(name.to_string(), path);
            }
        }
    }
    Ok(())
}

impl Schema {
    fn load(root: &Path) -> Result<Self> {
        let mut events = BTreeMap::new();
        class_files(&root.join("events"), &mut events)?;
        Ok(Schema {
            root: root.to_path_buf(),
            dict: read(&root.join("dictionary.json"))?,
            events,
        })
    }

    fn file(&self, kind: &str, name: &str) -> Result<PathBuf> {
        Ok(match kind {
            "class" => self
                .events
                .get(name)
                .with_context(|| format!("no class {name}"))?
                .clone(),
            _ => self.root.join(format!("objects/{name}.json")),
        })
    }

    /// The constraints and attributes of a class or object, following `extends` (a class or
    /// object without constraints of its own has its parent's) and `$include`.
    fn attributes(&self, kind: &str, name: &str) -> Result<(Value, Attrs)> {
        let v = read(&self.file(kind, name)?)?;
        let (mut constraints, mut out) = match v["extends"].as_str() {
            Some(parent) => self.attributes(kind, parent)?,
            None => (Value::Null, Attrs::new()),
        };
        if v.get("constraints").is_some() {
            constraints = v["constraints"].clone();
        }
        let empty = Map::new();
        let attrs = v["attributes"].as_object().unwrap_or(&empty);
        for inc in attrs
            .get("$include")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let rel = inc.as_str().context("$include of no path")?;
            let included = read(&self.root.join(rel))?;
            let profile = rel
                .starts_with("profiles/")
                .then(|| included["name"].as_str().unwrap_or(rel).to_string());
            for (k, a) in included["attributes"].as_object().unwrap_or(&empty) {
                let slot = out.entry(k.clone()).or_insert((Value::Null, None));
                merge(&mut slot.0, a);
                slot.1 = profile.clone();
            }
        }
        for (k, a) in attrs.iter().filter(|(k, _)| *k != "$include") {
            merge(
                &mut out.entry(k.clone()).or_insert((Value::Null, None)).0,
                a,
            );
        }
        // The dictionary's definition under the class's or object's.
        for (k, (def, _)) in out.iter_mut() {
            let mut full = self.dict["attributes"][k].clone();
            merge(&mut full, def);
            *def = full;
        }
        Ok((constraints, out))
    }
}

/// Enum values the schema does not list but its server generates: a class's own `class_uid`
/// and `category_uid`, and the observable `type_id`s the types, attributes and objects
/// declare with `observable`.
struct Generated {
    /// Class name -> (class uid, caption, category uid, category caption).
    classes: BTreeMap<String, (u64, String, u64, String)>,
    observables: BTreeMap<String, String>,
}

impl Schema {
    fn observables(&self) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        let mut add = |v: &Value| {
            if let (Some(n), Some(c)) = (v["observable"].as_u64(), v["caption"].as_str()) {
                out.insert(n.to_string(), c.to_string());
            }
        };
        for section in [&self.dict["types"]["attributes"], &self.dict["attributes"]] {
            section
                .as_object()
                .into_iter()
                .flatten()
                .for_each(|(_, v)| add(v));
        }
        let dir = self.root.join("objects");
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            add(&read(&entry?.path())?);
        }
        Ok(out)
    }

    fn generated_enum(
        &self,
        scope: &str,
        attr: &str,
        generated: &Generated,
    ) -> Result<Vec<(String, String)>> {
        if scope == "object/observable" && attr == "type_id" {
            return Ok(generated.observables.clone().into_iter().collect());
        }
        let Some((uid, caption, cat_uid, cat_caption)) = scope
            .strip_prefix("class/")
            .and_then(|c| generated.classes.get(c))
        else {
            return Ok(Vec::new());
        };
        Ok(match attr {
            "class_uid" => vec![(uid.to_string(), caption.clone())],
            "category_uid" => vec![(cat_uid.to_string(), cat_caption.clone())],
            _ => Vec::new(),
        })
    }
}

fn or_dash(v: Option<&str>) -> &str {
    v.unwrap_or("-")
}

/// The lines of one class or object; the object types its attributes name go to `todo`.
fn scope_lines(
    schema: &Schema,
    kind: &str,
    name: &str,
    generated: &Generated,
    lines: &mut Vec<String>,
    todo: &mut Vec<String>,
) -> Result<()> {
    let (constraints, attrs) = schema.attributes(kind, name)?;
    let scope = format!("{kind}/{name}");
    for (k, (def, profile)) in &attrs {
        let ty = def["type"]
            .as_str()
            .with_context(|| format!("{scope}.{k}: no type"))?;
        if !ty.ends_with("_t") && ty != "object" {
            todo.push(ty.to_string());
        }
        lines.push(format!(
            "attr\t{scope}\t{k}\t{ty}\t{}\t{}\t{}\t{}\t{}",
            or_dash(def["requirement"].as_str()),
            u8::from(def["is_array"] == true),
            or_dash(profile.as_deref()),
            or_dash(def["@deprecated"]["since"].as_str()),
            or_dash(def["sibling"].as_str()),
        ));
        let mut values: BTreeMap<String, String> = def["enum"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(v, e)| (v.clone(), e["caption"].as_str().unwrap_or("").to_string()))
            .collect();
        // A class's uids are its own, not base_event's placeholders.
        if kind == "class" && ["class_uid", "category_uid"].contains(&k.as_str()) {
            values.clear();
        }
        values.extend(schema.generated_enum(&scope, k, generated)?);
        for (value, caption) in values {
            lines.push(format!("enum\t{scope}\t{k}\t{value}\t{caption}"));
        }
    }
    for (c, list) in constraints.as_object().into_iter().flatten() {
        let names: Vec<&str> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        lines.push(format!("constraint\t{scope}\t{c}\t{}", names.join(",")));
    }
    if kind == "object" {
        let v = read(&schema.file(kind, name)?)?;
        lines.push(format!(
            "object\t{name}\t{}",
            or_dash(v["@deprecated"]["since"].as_str())
        ));
    }
    Ok(())
}

pub(super) fn derive(root: &Path) -> Result<String> {
    let schema = Schema::load(root)?;
    let version = read(&root.join("version.json"))?;
    if version["version"] != "1.8.0" {
        bail!("{}: OCSF {}, not 1.8.0", root.display(), version["version"]);
    }
    let categories = read(&root.join("categories.json"))?;
    let mut lines = Vec::new();
    for (t, def) in schema.dict["types"]["attributes"]
        .as_object()
        .into_iter()
        .flatten()
    {
        lines.push(format!("type\t{t}\t{}", def["type"].as_str().unwrap_or(t)));
    }
    let mut generated = Generated {
        classes: BTreeMap::new(),
        observables: schema.observables()?,
    };
    let mut todo = Vec::new();
    for class in CLASSES {
        let v = read(&schema.file("class", class)?)?;
        let category = v["category"].as_str().map_or_else(
            || {
                read(&schema.file("class", v["extends"].as_str().unwrap_or(""))?)
                    .map(|p| p["category"].as_str().unwrap_or("").to_string())
            },
            |c| Ok(c.to_string()),
        )?;
        let cat_uid = categories["attributes"][&category]["uid"]
            .as_u64()
            .with_context(|| format!("no category {category}"))?;
        let uid = cat_uid * 1000 + v["uid"].as_u64().context("class without uid")?;
        let caption = or_dash(v["caption"].as_str()).to_string();
        let cat_caption = or_dash(categories["attributes"][&category]["caption"].as_str());
        lines.push(format!("class\t{class}\t{uid}\t{cat_uid}\t{caption}"));
        generated.classes.insert(
            class.to_string(),
            (uid, caption, cat_uid, cat_caption.to_string()),
        );
        scope_lines(&schema, "class", class, &generated, &mut lines, &mut todo)?;
    }
    let mut done = BTreeSet::new();
    while let Some(obj) = todo.pop() {
        if done.insert(obj.clone()) {
            scope_lines(&schema, "object", &obj, &generated, &mut lines, &mut todo)?;
        }
    }
    let mut out = String::from(
        "# OCSF 1.8.0 (ocsf/ocsf-schema): the classes of the ocsf format and the objects they \
         reach.\n# Derived by `cargo xtask spec-fixture`; do not edit. Columns: \
         xtask/src/spec_fixture/ocsf.rs.\n",
    );
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    Ok(out)
}

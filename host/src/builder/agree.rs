//! Standard recipes' params checked against each other before anything
//! runs: a mistake one recipe would find only after its dependencies were
//! built (minutes of compiling) is named at once.

use kiln_core::manifest::{Manifest, RecipeRef, Source, Target};

use super::BuildError;

/// Check every target of `order` whose params depend on another's.
pub(super) fn check(manifest: &Manifest, order: &[&Target]) -> Result<(), BuildError> {
    for t in order {
        if is(t, "oci-image") {
            image_contents_follow_platforms(manifest, t)?;
        }
    }
    Ok(())
}

fn is(t: &Target, recipe: &str) -> bool {
    matches!(&t.recipe, RecipeRef::Standard(n) if n == recipe)
}

/// `params.platforms` of `t`, if it names several.
fn platforms(t: &Target) -> Option<Vec<&str>> {
    let list: Vec<&str> = t.params["platforms"]
        .as_array()?
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    (list.len() > 1).then_some(list)
}

/// A multi-platform image takes each platform's file from a multi-platform
/// go target only through `{platform}` in the content's path: without it,
/// one platform's binary would go into every platform's image (the image's
/// run check refuses that, but only after every build).
fn image_contents_follow_platforms(manifest: &Manifest, t: &Target) -> Result<(), BuildError> {
    let Some(image_platforms) = platforms(t) else {
        return Ok(());
    };
    for c in t.params["contents"].as_array().into_iter().flatten() {
        let (Some(from), Some(path)) = (c["from"].as_str(), c["path"].as_str()) else {
            continue;
        };
        if path.contains("{platform}") {
            continue;
        }
        let Some(Source::Target(dep)) = t.inputs.get(from).map(|i| &i.source) else {
            continue;
        };
        let Some(d) = manifest.targets.get(dep) else {
            continue;
        };
        if let (true, Some(dep_platforms)) = (is(d, "go"), platforms(d)) {
            // `linux-amd64/bin/hello`: one platform's directory named.
            let dirs: Vec<String> = dep_platforms.iter().map(|p| p.replace('/', "-")).collect();
            let file = match path.split_once('/') {
                Some((first, rest)) if dirs.iter().any(|d| d == first) => rest,
                _ => path,
            };
            return Err(BuildError::Params {
                target: t.name.clone(),
                at: t.at.clone(),
                message: format!(
                    "params.contents takes path = \"{path}\" from '{from}', but the image is built for {} and target '{dep}' builds each platform into its own directory; write path = \"{{platform}}/{file}\" so each platform's image gets its own binary",
                    image_platforms.join(", ")
                ),
            });
        }
    }
    Ok(())
}

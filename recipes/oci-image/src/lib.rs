//! The standard `oci-image` recipe: files from inputs → a reproducible image
//! that `docker load` / `podman load` accept and that runs.
//!
//! 1. collect `contents` (plus `directories`, CA certificates, tzdata) into a
//!    sorted tree; check the entrypoint can start (`runcheck`);
//! 2. lay out each layer as a deterministic tar (`layer`) and have the host
//!    hash it: digest = diff_id (layers are stored uncompressed so they are
//!    byte-stable);
//! 3. make the config, manifest and index with oci-spec's types;
//! 4. have the host write the OCI image layout in `/out/oci/` and the same
//!    blobs plus docker's `manifest.json` as `/out/image.tar`, in parallel,
//!    copying file data from the inputs (`kiln_sdk::assemble`).
//!
//! Params are documented in docs/recipes/oci-image.md.

mod base;
mod layer;
mod params;
mod runcheck;
mod version;

use std::collections::BTreeMap;
use std::fs;

use kiln_sdk::assemble::Pieces;
use kiln_sdk::platform::Platform;
use kiln_sdk::{Context, Error, Result, info};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, Os, PlatformBuilder, RootFsBuilder,
    Sha256Digest,
};
use params::{LayerMode, Params, parse_mode};
use sha2::{Digest, Sha256};

use layer::Tree;

const OCI: &str = "/out/oci";
const OCI_LAYOUT: &[u8] = b"{\"imageLayoutVersion\":\"1.0.0\"}";

/// One platform's image: its manifest (as a descriptor, with the platform
/// when there are several) and the blobs it is made of.
struct Image {
    platform: Platform,
    manifest: Descriptor,
    config_hex: String,
    /// The config, the layers and the manifest, by hex digest.
    blob_hexes: Vec<String>,
    layer_hexes: Vec<String>,
    layer_count: usize,
    file_count: usize,
}

fn build() -> Result<()> {
    let p: Params = kiln_sdk::params()?;
    let sde = kiln_sdk::source_date_epoch();
    let multi = !p.platforms.is_empty();
    let platforms = platforms(&p)?;

    fs::create_dir_all(format!("{OCI}/blobs/sha256"))?;
    let mut blobs: BTreeMap<String, Pieces> = BTreeMap::new();
    let mut images = Vec::new();
    for pl in &platforms {
        let image = build_image(&p, pl, multi, sde, &mut blobs).with_context(|| {
            if multi {
                format!("the {pl} image")
            } else {
                "the image".into()
            }
        })?;
        images.push(image);
    }
    let (reference, chosen) = write_layout(&p, &images, &mut blobs, sde)?;
    for i in &images {
        info!(
            "{reference}{}: {} layer(s), {} files",
            if multi {
                format!(" ({})", i.platform)
            } else {
                String::new()
            },
            i.layer_count,
            i.file_count
        );
    }
    info!(
        "/out/oci{}; /out/image.tar holds {}",
        if multi { " (an image index)" } else { "" },
        chosen
    );
    Ok(())
}

/// The platforms to build: `params.platforms` (each once), else one
/// linux image of `params.architecture`.
fn platforms(p: &Params) -> Result<Vec<Platform>> {
    if p.platforms.is_empty() {
        return Ok(vec![Platform {
            os: "linux".into(),
            arch: p.architecture.clone(),
            variant: None,
        }]);
    }
    let mut list = Vec::new();
    for s in &p.platforms {
        let pl =
            Platform::parse(s).map_err(|e| Error::bad_params(format!("params.platforms: {e}")))?;
        if list.contains(&pl) {
            return Err(Error::bad_params(format!(
                "params.platforms names {s} twice"
            )));
        }
        list.push(pl);
    }
    Ok(list)
}

/// Step 4: `/out/oci` (index.json naming the image, or an image index of
/// several) and `/out/image.tar` (one platform's image with docker's
/// manifest.json), written by the host in parallel. Returns the image's
/// reference and the platform image.tar holds.
fn write_layout(
    p: &Params,
    images: &[Image],
    blobs: &mut BTreeMap<String, Pieces>,
    sde: u64,
) -> Result<(String, Platform)> {
    let multi = !p.platforms.is_empty();
    // One image: index.json names its manifest. Several: an image index
    // blob names one manifest per platform, and index.json names it.
    let (top, default_tag) = if multi {
        let manifests: Vec<Descriptor> = images.iter().map(|i| i.manifest.clone()).collect();
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .build()
            .map_err(oci_err)?;
        let json = canonical_json(&index)?;
        let hex = write_blob(&json, blobs)?;
        (
            descriptor(MediaType::ImageIndex, json.len() as u64, &hex)?,
            hex[..16].to_string(),
        )
    } else {
        (
            images[0].manifest.clone(),
            images[0].config_hex[..16].to_string(),
        )
    };
    let tag = p.tag.clone().unwrap_or(default_tag);
    let reference = format!("{}:{tag}", p.name);
    let top_index = |d: Descriptor| -> Result<Vec<u8>> {
        let mut d = d;
        d.set_annotations(Some(
            [
                ("org.opencontainers.image.ref.name".to_string(), tag.clone()),
                ("io.containerd.image.name".to_string(), reference.clone()),
            ]
            .into_iter()
            .collect(),
        ));
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![d])
            .build()
            .map_err(oci_err)?;
        canonical_json(&index)
    };
    fs::write(format!("{OCI}/index.json"), top_index(top)?)?;
    fs::write(format!("{OCI}/oci-layout"), OCI_LAYOUT)?;

    let chosen = docker_image(images);
    let archive = docker_archive(
        chosen,
        blobs,
        &reference,
        top_index(chosen.manifest.clone())?,
        sde,
    )?;

    // The layers' bytes, twice: as OCI blobs and inside image.tar. The host
    // writes the files in parallel, copying from the inputs.
    let mut files: Vec<(String, &Pieces)> = vec![("/out/image.tar".into(), &archive)];
    for hex in images.iter().flat_map(|i| &i.layer_hexes) {
        let path = format!("{OCI}/blobs/sha256/{hex}");
        if !files.iter().any(|(p, _)| *p == path) {
            files.push((path, &blobs[hex]));
        }
    }
    kiln_sdk::assemble::write_files(&files)?;
    Ok((reference, chosen.platform.clone()))
}

/// The image `/out/image.tar` holds (docker load takes one), the same
/// whatever machine builds it: linux/amd64 if it is built, else the first.
fn docker_image(images: &[Image]) -> &Image {
    images
        .iter()
        .find(|i| i.platform.os == "linux" && i.platform.arch == "amd64")
        .unwrap_or(&images[0])
}

/// `/out/image.tar`'s pieces: the OCI layout of `chosen` (its own
/// `index_json`) plus docker's manifest.json, as docker save writes since
/// v25.
fn docker_archive(
    chosen: &Image,
    blobs: &BTreeMap<String, Pieces>,
    reference: &str,
    index_json: Vec<u8>,
    sde: u64,
) -> Result<Pieces> {
    let docker_manifest = serde_json::json!([{
        "Config": format!("blobs/sha256/{}", chosen.config_hex),
        "RepoTags": [reference],
        "Layers": chosen.layer_hexes.iter().map(|h| format!("blobs/sha256/{h}")).collect::<Vec<_>>(),
    }]);
    let archive_blobs: BTreeMap<String, Pieces> = blobs
        .iter()
        .filter(|(hex, _)| chosen.blob_hexes.contains(hex))
        .map(|(h, b)| (h.clone(), b.clone()))
        .collect();
    archive_pieces(
        &archive_blobs,
        &[
            ("index.json", index_json),
            ("manifest.json", serde_json::to_vec(&docker_manifest)?),
            ("oci-layout", OCI_LAYOUT.to_vec()),
        ],
        sde,
    )
}

/// `{platform}` in a content's path: the platform's directory name, as the
/// go recipe lays out a cross build (`linux-arm64/bin/hello`).
fn for_platform(path: &str, platform: &Platform) -> String {
    path.replace("{platform}", &platform.dir())
}

/// Lay out one platform's image: layers, run check, config, manifest.
fn build_image(
    p: &Params,
    platform: &Platform,
    multi: bool,
    sde: u64,
    blobs: &mut BTreeMap<String, Pieces>,
) -> Result<Image> {
    let base = p
        .base
        .as_deref()
        .map(|b| base::load(b, platform))
        .transpose()
        .context("params.base")?;
    let layers = collect_layers(p, platform)?;
    // The image's tree for the run check: the base's (None when its
    // layers cannot be read here), then kiln's layers over it.
    let base_tree = match &base {
        Some(b) => base::listing(b)?,
        None => Some(Tree::new()),
    };
    let mut image = base_tree.clone().unwrap_or_default();
    for l in &layers {
        image.extend(l.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let inherited = |key: &str| -> Option<String> {
        base.as_ref()?.config[key]
            .as_array()?
            .first()?
            .as_str()
            .map(str::to_string)
    };
    // What runs: the entrypoint (params', else the base's, which a cmd
    // alone keeps, as docker does), else the cmd.
    let program = p
        .entrypoint
        .first()
        .cloned()
        .or_else(|| inherited("Entrypoint"))
        .or_else(|| p.cmd.first().cloned())
        .or_else(|| inherited("Cmd"))
        .ok_or_else(|| {
            Error::bad_params("set entrypoint (or cmd): an image with nothing to run cannot start")
        })?;
    let base_path = base.as_ref().and_then(|b| {
        b.config["Env"]
            .as_array()?
            .iter()
            .filter_map(|e| e.as_str()?.strip_prefix("PATH="))
            .next_back()
            .map(str::to_string)
    });
    let path_env = p.env.get("PATH").cloned().or(base_path);
    match (&base, &base_tree) {
        (Some(b), None) => info!(
            "the base {}'s layers are zstd: the entrypoint {program} is not checked against them",
            b.reference
        ),
        _ => runcheck::check(&image, &program, path_env.as_deref(), platform)?,
    }

    // The base's layers first, as they are (same blobs, same digests).
    let mut layer_descs = Vec::new();
    let mut layer_hexes = Vec::new();
    let mut diff_ids: Vec<String> = Vec::new();
    if let Some(b) = &base {
        for (media_type, hex, size) in &b.layers {
            layer_descs.push(descriptor(
                MediaType::from(media_type.as_str()),
                *size,
                hex,
            )?);
            layer_hexes.push(hex.clone());
            let mut pieces = Pieces::new();
            pieces.range(b.blob_dir.join(hex), 0, *size);
            blobs.insert(hex.clone(), pieces);
        }
        diff_ids.extend(b.diff_ids.iter().cloned());
    }
    let (own_descs, own_hexes) = layer_blobs(&layers, sde, blobs)?;
    diff_ids.extend(own_hexes.iter().map(|h| format!("sha256:{h}")));
    layer_descs.extend(own_descs);
    layer_hexes.extend(own_hexes);

    // serde_json writes struct fields in declaration order and the labels
    // map is re-sorted, so the bytes are stable.
    let own_config = image_config(p, platform, diff_ids, sde)?;
    let config_json = match &base {
        None => canonical_json(&own_config)?,
        Some(b) => {
            let mut v = serde_json::to_value(&own_config)?;
            v["config"] = base::merge_config(
                &b.config,
                &v["config"],
                !p.entrypoint.is_empty(),
                !p.cmd.is_empty(),
            );
            let mut history = b.history.clone();
            for _ in &layers {
                history.push(serde_json::json!({
                    "created": rfc3339(sde),
                    "created_by": "kiln oci-image",
                    "comment": format!("on {}", b.reference),
                }));
            }
            v["history"] = serde_json::Value::Array(history);
            canonical_json(&v)?
        }
    };
    let config_hex = write_blob(&config_json, blobs)?;
    let config_desc = descriptor(
        MediaType::ImageConfig,
        config_json.len() as u64,
        &config_hex,
    )?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(layer_descs)
        .build()
        .map_err(oci_err)?;
    let manifest_json = canonical_json(&manifest)?;
    let manifest_hex = write_blob(&manifest_json, blobs)?;
    let mut manifest_desc = descriptor(
        MediaType::ImageManifest,
        manifest_json.len() as u64,
        &manifest_hex,
    )?;
    if multi {
        let mut pb = PlatformBuilder::default()
            .architecture(Arch::from(platform.arch.as_str()))
            .os(Os::from(platform.os.as_str()));
        if let Some(v) = &platform.variant {
            pb = pb.variant(v.clone());
        }
        manifest_desc.set_platform(Some(pb.build().map_err(oci_err)?));
    }
    let layer_count = layer_hexes.len();
    let mut blob_hexes = layer_hexes.clone();
    blob_hexes.push(config_hex.clone());
    blob_hexes.push(manifest_hex);
    Ok(Image {
        platform: platform.clone(),
        manifest: manifest_desc,
        config_hex,
        blob_hexes,
        layer_hexes,
        layer_count,
        file_count: image.len(),
    })
}

/// Step 2: each layer's tar, as pieces: its digest first (the host reads
/// the inputs once), the bytes are written with everything else. Returns
/// the layers' descriptors and hex digests (= diff_ids: stored uncompressed).
fn layer_blobs(
    layers: &[Tree],
    sde: u64,
    blobs: &mut BTreeMap<String, Pieces>,
) -> Result<(Vec<Descriptor>, Vec<String>)> {
    let mut descs = Vec::new();
    let mut hexes = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let pieces = layer::tar_pieces(l, sde)?;
        let (digest, size) = pieces
            .sha256()
            .with_context(|| format!("hashing layer {i}"))?;
        let hex = hex(&digest);
        descs.push(descriptor(MediaType::ImageLayer, size, &hex)?);
        hexes.push(hex.clone());
        blobs.insert(hex, pieces);
    }
    Ok((descs, hexes))
}

/// Step 1: each layer's tree — `contents` (one layer, or one each with
/// `layers = "per-content"`), then CA certificates, tzdata and
/// `directories` in the last.
fn collect_layers(p: &Params, platform: &Platform) -> Result<Vec<Tree>> {
    let mut layers: Vec<Tree> = Vec::new();
    let mut current = Tree::new();
    for (i, c) in p.contents.iter().enumerate() {
        let src = under(kiln_sdk::input(&c.from)?, &for_platform(&c.path, platform));
        let mode = c
            .mode
            .as_deref()
            .map(|m| parse_mode(m, &format!("contents[{i}]")))
            .transpose()
            .map_err(Error::msg)?;
        layer::add_source(&mut current, &src, &c.dest, mode)
            .with_context(|| format!("contents[{i}] ({} → {})", src.display(), c.dest))?;
        if p.layers == LayerMode::PerContent {
            layers.push(std::mem::take(&mut current));
        }
    }
    if let Some(ca) = &p.ca_certificates {
        let src = under(kiln_sdk::input(&ca.input)?, &ca.path);
        layer::add_source(
            &mut current,
            &src,
            "/etc/ssl/certs/ca-certificates.crt",
            Some(0o644),
        )
        .context("ca_certificates")?;
    }
    if let Some(tz) = &p.tzdata {
        let src = under(kiln_sdk::input(&tz.input)?, &tz.path);
        layer::add_source(&mut current, &src, "/usr/share/zoneinfo", None).context("tzdata")?;
    }
    for (i, d) in p.directories.iter().enumerate() {
        let mode = d
            .mode
            .as_deref()
            .map(|m| parse_mode(m, &format!("directories[{i}]")))
            .transpose()
            .map_err(Error::msg)?;
        layer::add_dir(&mut current, &d.path, mode.unwrap_or(0o755))?;
    }
    if !current.is_empty() || layers.is_empty() {
        layers.push(current);
    }
    Ok(layers)
}

/// Step 3: the image config — what to run, how, and the layers' diff_ids.
fn image_config(
    p: &Params,
    platform: &Platform,
    diff_ids: Vec<String>,
    sde: u64,
) -> Result<oci_spec::image::ImageConfiguration> {
    let env: Vec<String> = p.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut config = ConfigBuilder::default().env(env);
    if !p.entrypoint.is_empty() {
        config = config.entrypoint(p.entrypoint.clone());
    }
    if !p.cmd.is_empty() {
        config = config.cmd(p.cmd.clone());
    }
    if let Some(w) = &p.working_dir {
        config = config.working_dir(w.clone());
    }
    if let Some(u) = &p.user {
        config = config.user(u.clone());
    }
    if !p.exposed_ports.is_empty() {
        config = config.exposed_ports(p.exposed_ports.clone());
    }
    let mut labels = p.labels.clone();
    if !labels.contains_key(version::LABEL)
        && let Some(v) = version::stamped(p, platform)?
    {
        labels.insert(version::LABEL.to_string(), v);
    }
    if !labels.is_empty() {
        config = config.labels(
            labels
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    let mut image_config = ImageConfigurationBuilder::default()
        .created(rfc3339(sde))
        .architecture(Arch::from(platform.arch.as_str()))
        .os(Os::from(platform.os.as_str()))
        .config(config.build().map_err(oci_err)?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()
                .map_err(oci_err)?,
        );
    if let Some(v) = &platform.variant {
        image_config = image_config.variant(v.clone());
    }
    image_config.build().map_err(oci_err)
}

fn oci_err(e: oci_spec::OciSpecError) -> Error {
    Error::msg(format!("building the image metadata: {e}"))
}

/// JSON with object keys sorted, so maps (labels, annotations) are stable.
fn canonical_json(v: &impl serde::Serialize) -> Result<Vec<u8>> {
    let value: serde_json::Value = serde_json::to_value(v)?;
    Ok(serde_json::to_vec(&value)?)
}

fn descriptor(media_type: MediaType, size: u64, hex: &str) -> Result<Descriptor> {
    let digest: Sha256Digest = hex.parse().map_err(oci_err)?;
    DescriptorBuilder::default()
        .media_type(media_type)
        .size(size)
        .digest(digest)
        .build()
        .map_err(oci_err)
}

/// Write a small blob (config, manifest) into the OCI layout and keep its
/// bytes for the archive; its digest (hex) names it.
fn write_blob(bytes: &[u8], blobs: &mut BTreeMap<String, Pieces>) -> Result<String> {
    let hex = hex(&Sha256::digest(bytes));
    fs::write(format!("{OCI}/blobs/sha256/{hex}"), bytes)?;
    let mut pieces = Pieces::new();
    pieces.bytes(bytes);
    blobs.insert(hex.clone(), pieces);
    Ok(hex)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `image.tar`'s layout: the blobs, then index.json, manifest.json and
/// oci-layout — every entry sorted by name.
fn archive_pieces(
    blobs: &BTreeMap<String, Pieces>,
    files: &[(&str, Vec<u8>)],
    sde: u64,
) -> Result<Pieces> {
    let mut tar = layer::TarPieces::new(sde);
    tar.dir("blobs", 0o755)?;
    tar.dir("blobs/sha256", 0o755)?;
    for (hex, pieces) in blobs {
        tar.file(&format!("blobs/sha256/{hex}"), 0o644, pieces)?;
    }
    debug_assert!(files.windows(2).all(|w| w[0].0 < w[1].0));
    for (name, bytes) in files {
        let mut pieces = Pieces::new();
        pieces.bytes(bytes);
        tar.file(name, 0o644, &pieces)?;
    }
    tar.finish()
}

/// `1970-01-01T00:00:01Z` for SOURCE_DATE_EPOCH 1.
fn rfc3339(secs: u64) -> String {
    let days = secs / 86400;
    let rem = secs % 86400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `rel` inside `root`; empty: `root` itself (joining "" would add a `/`,
/// and a file input is then not a file).
fn under(root: std::path::PathBuf, rel: &str) -> std::path::PathBuf {
    if rel.is_empty() { root } else { root.join(rel) }
}

kiln_sdk::recipe!(build);

//! Target platforms as OCI and Go spell them: `os/arch[/variant]`
//! (`linux/amd64`, `linux/arm64`, `linux/arm/v7`), with the directory name
//! the standard recipes agree on for a platform's files (`linux-arm64`), so
//! one recipe's per-platform output is another's per-platform input.

/// One target platform.
///
/// ```
/// let p = kiln_sdk::platform::Platform::parse("linux/arm/v7").unwrap();
/// assert_eq!((p.os.as_str(), p.variant.as_deref()), ("linux", Some("v7")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Parse `os/arch[/variant]`; each part is lowercase letters and digits.
    ///
    /// ```
    /// use kiln_sdk::platform::Platform;
    /// let p = Platform::parse("linux/arm/v7").unwrap();
    /// assert_eq!((p.arch.as_str(), p.dir()), ("arm", "linux-arm-v7".to_string()));
    /// assert!(Platform::parse("linux/../etc").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok(p)) {
            return Err(format!(
                "{s:?} is not a platform os/arch[/variant] like \"linux/arm64\" or \"linux/arm/v7\""
            ));
        }
        Ok(Platform {
            os: parts[0].to_string(),
            arch: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }

    /// The directory a platform's files go in: `linux-arm64`, `linux-arm-v7`.
    ///
    /// ```
    /// use kiln_sdk::platform::Platform;
    /// assert_eq!(Platform::parse("linux/arm64").unwrap().dir(), "linux-arm64");
    /// ```
    pub fn dir(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}-{}-{v}", self.os, self.arch),
            None => format!("{}-{}", self.os, self.arch),
        }
    }

    /// The ELF `e_machine` a Linux executable for this platform has, if
    /// kiln knows the architecture.
    ///
    /// ```
    /// use kiln_sdk::platform::Platform;
    /// assert_eq!(Platform::parse("linux/amd64").unwrap().elf_machine(), Some(62));
    /// assert_eq!(Platform::parse("linux/vax").unwrap().elf_machine(), None);
    /// ```
    pub fn elf_machine(&self) -> Option<u16> {
        Some(match self.arch.as_str() {
            "386" => 3,
            "arm" => 40,
            "amd64" => 62,
            "arm64" => 183,
            "ppc64" | "ppc64le" => 21,
            "s390x" => 22,
            "riscv64" => 243,
            "loong64" => 258,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_round_trip_and_bad_ones_are_refused() {
        for s in ["linux/amd64", "linux/arm64", "linux/arm/v7"] {
            assert_eq!(Platform::parse(s).map(|p| p.to_string()), Ok(s.to_string()));
        }
        for bad in [
            "linux",
            "Linux/amd64",
            "linux/../x",
            "a/b/c/d",
            "linux//v7",
            "",
        ] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }
}

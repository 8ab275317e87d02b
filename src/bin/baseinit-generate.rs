//! `baseinit-generate OUTDIR`: writes the man pages and the bash completions
//! from the clap definitions (`baseinit::manual`), for an image to install:
//! `OUTDIR/man/man8/NAME.8` and `OUTDIR/completions/bash/NAME`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use baseinit::manual;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, out] = args.as_slice() else {
        eprintln!("usage: baseinit-generate OUTDIR");
        std::process::exit(2);
    };
    if let Err(e) = generate(Path::new(out)) {
        eprintln!("baseinit-generate: {e}");
        std::process::exit(1);
    }
}

fn generate(out: &Path) -> io::Result<()> {
    let man = out.join("man/man8");
    let bash = out.join("completions/bash");
    fs::create_dir_all(&man)?;
    fs::create_dir_all(&bash)?;
    for page in manual::pages() {
        let mut text = Vec::new();
        manual::render_man(&page, &mut text)?;
        write(man.join(format!("{}.8", page.name)), &text)?;
    }
    for (name, command) in [
        ("baseinit", manual::baseinit()),
        ("sv", manual::sv()),
        ("setuser", manual::setuser()),
        ("svlogd", manual::svlogd()),
        ("chpst", manual::chpst()),
    ] {
        let mut text = Vec::new();
        manual::render_bash(command, name, &mut text);
        write(bash.join(name), &text)?;
    }
    println!(
        "baseinit-generate: man pages in {}, bash completions in {}",
        man.display(),
        bash.display()
    );
    Ok(())
}

/// Written whole under a temporary name, then renamed.
fn write(path: PathBuf, text: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(text)?;
    file.sync_all()?;
    fs::rename(&tmp, &path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

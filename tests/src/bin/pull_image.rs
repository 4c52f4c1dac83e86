//! Pulls one image into a home and prints how many blobs it downloaded:
//! `pull_image HOME REFERENCE`. The registry test runs two of these at once.

use boxlite::images::{ImageStore, PullOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, home, reference] = args.as_slice() else {
        eprintln!("usage: pull HOME REFERENCE");
        std::process::exit(2);
    };
    let store = ImageStore::open(std::path::Path::new(home));
    match store.pull(reference, &PullOptions::default()).await {
        Ok(outcome) => println!("{}", outcome.blobs_downloaded),
        Err(err) => {
            eprintln!("pull: {err}");
            std::process::exit(1);
        }
    }
}

use std::hint::black_box;
use tokio_util::sync::CancellationToken;
fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap();
    let n: usize = args.next().unwrap().parse().unwrap();
    let parent = CancellationToken::new();
    let mut done = 0;
    if mode == "open" || mode == "closed" {
        for _ in 0..n / 100 {
            let root = CancellationToken::new();
            if mode == "closed" {
                root.cancel();
            }
            let mut leaf = root.clone();
            for _ in 0..100 {
                leaf = leaf.child_token();
            }
            root.cancel();
            done += black_box(&leaf).is_cancelled() as usize;
        }
    } else {
        for _ in 0..n {
            let c = parent.child_token();
            done += black_box(&c).is_cancelled() as usize;
        }
    }
    println!("{done}");
}

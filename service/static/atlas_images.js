// An atlas job's pictures as blob: URLs. The API key goes in a header, never in a URL, so an
// <img> cannot fetch an artifact itself: each is fetched here, a few at a time (a 512-unit
// grid must not send 512 requests at once), and kept for the page's life, so that a picture
// seen once shows again at once (back from a unit page to the grid).

import { api } from "./api.js";

const MAX_PARALLEL = 6;

export class Dropped extends Error {
  constructor(name) {
    super(`${name}: no longer wanted`);
    this.name = "AbortError";
  }
}

export class ArtifactImages {
  /** `artifacts`: Map name -> the job's artifact reference ({name, url, ...}). */
  constructor(artifacts) {
    this.artifacts = artifacts;
    this.loaded = new Map(); // name -> Promise of a blob: URL
    this.queue = []; // loads not started yet: {name, run, reject}
    this.running = 0;
  }

  has(name) {
    return Boolean(name) && this.artifacts.has(name);
  }

  /** A blob: URL of the artifact. `first`: before the thumbnails waiting (a unit page's pictures). */
  url(name, { first = false } = {}) {
    const known = this.loaded.get(name);
    if (known) return known;
    const artifact = this.artifacts.get(name);
    if (!artifact) return Promise.reject(new Error(`the job has no artifact ${name}`));
    const promise = new Promise((resolve, reject) => {
      const run = async () => {
        const response = await api(artifact.url, { raw: true, headers: { Accept: "*/*" } });
        resolve(URL.createObjectURL(await response.blob()));
      };
      const task = { name, run: () => run().catch(reject), reject };
      if (first) this.queue.unshift(task);
      else this.queue.push(task);
    });
    this.loaded.set(name, promise);
    promise.catch(() => this.loaded.delete(name)); // asked again later: fetched again
    this.pump();
    return promise;
  }

  /** Forget a load not started yet (its thumbnail scrolled away before its turn came). */
  drop(name) {
    const at = this.queue.findIndex((task) => task.name === name);
    if (at < 0) return;
    const [task] = this.queue.splice(at, 1);
    task.reject(new Dropped(name));
  }

  pump() {
    while (this.running < MAX_PARALLEL && this.queue.length) {
      const task = this.queue.shift();
      this.running += 1;
      task.run().finally(() => {
        this.running -= 1;
        this.pump();
      });
    }
  }

  /** Show the artifact in `img` when it comes (nothing when dropped; a note when it failed). */
  show(img, name, options) {
    img.dataset.artifact = name;
    return this.url(name, options).then(
      (url) => {
        if (img.dataset.artifact === name) img.src = url;
      },
      (error) => {
        if (error instanceof Dropped || img.dataset.artifact !== name) return;
        img.alt = `${name}: ${error.message}`;
        img.classList.add("failed");
      },
    );
  }
}

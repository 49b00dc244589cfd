// One long-poll per page and server: GET /watch follows the requests of every cell at once
// (browsers allow six connections per origin, and a page may hold many cells, each with a live
// session). A cell joins with the seq it has; the poll in flight is then aborted so that the next
// one names the new cell too. A failed poll (network, 5xx) is tried again with back-off, from the
// seq each cell has shown, so nothing is shown twice or skipped.
const POLL_WAIT = 25; // seconds the server may hold one poll
const watchers = new Map(); // server URL → its Watcher

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The page's watcher of `server`. */
export function watcher(server) {
  if (!watchers.has(server)) watchers.set(server, new Watcher(server));
  return watchers.get(server);
}

class Watcher {
  constructor(server) {
    this.server = server;
    this.cells = new Map(); // request id → {after, page, trouble, fail}
    this.polling = false;
    this.inFlight = null; // the AbortController of the poll in flight
    this.failures = 0;
  }

  /**
   * Follow request `id` from seq `after`: `page(answer)` gets each answer with news (as
   * /output's) and returns whether to go on; `trouble(ms)` hears of a failed poll and the wait
   * before the next; `fail(error)` of an answer that retrying cannot change. Returns a function
   * that stops following it.
   */
  follow(id, after, { page, trouble, fail }) {
    this.cells.set(id, { after, page, trouble, fail });
    if (this.inFlight) this.inFlight.abort(); // poll again at once, naming it too
    if (!this.polling) this._poll();
    return () => { this.cells.delete(id); };
  }

  async _poll() {
    this.polling = true;
    try {
      while (this.cells.size) await this._once();
    } finally {
      this.polling = false;
    }
  }

  async _once() {
    const ids = [...this.cells].map(([id, cell]) => `${id}:${cell.after}`).join(",");
    const controller = new AbortController();
    this.inFlight = controller;
    let response;
    let answer;
    try {
      response = await fetch(`${this.server}/watch?ids=${ids}&wait=${POLL_WAIT}`,
        { cache: "no-store", signal: controller.signal });
      if (response.status >= 500) throw new Error(`HTTP ${response.status}`);
      answer = await response.json();
    } catch (error) {
      if (controller.signal.aborted) return; // a cell joined: poll again now
      this.failures += 1;
      const wait = Math.min(250 * 2 ** this.failures, 5000);
      for (const cell of this.cells.values()) cell.trouble(wait);
      await sleep(wait);
      return;
    } finally {
      if (this.inFlight === controller) this.inFlight = null;
    }
    this.failures = 0;
    if (!response.ok) { // a 4xx: the same poll would get the same answer
      const message = answer && answer.error ? answer.error.message : `HTTP ${response.status}`;
      const cells = [...this.cells.values()];
      this.cells.clear();
      for (const cell of cells) cell.fail(new Error(message));
      return;
    }
    for (const id of answer.missing || []) {
      const cell = this.cells.get(id);
      this.cells.delete(id);
      if (cell) cell.fail(new Error(`the server has no request ${id}`));
    }
    for (const [id, page] of Object.entries(answer.requests || {})) {
      const cell = this.cells.get(id);
      if (!cell) continue;
      cell.after = Math.max(cell.after, page.next);
      if (!cell.page(page)) this.cells.delete(id);
    }
  }
}

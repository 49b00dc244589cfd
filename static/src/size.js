// An output frame's height, told to its cell whenever it changes: the cell sizes the iframe
// (and accepts the report only from a frame it made).

function height() {
  const body = document.body;
  if (!body) return 0;
  const margin = parseFloat(getComputedStyle(body).marginBottom) || 0;
  return Math.ceil(Math.max(body.getBoundingClientRect().bottom + margin, body.scrollHeight));
}

/** A function that posts `{singlecell: "size", height}` through `post` when the height changed. */
export function sizeReporter(post) {
  let reported = -1;
  return () => {
    const h = height();
    if (h !== reported) {
      reported = h;
      post({ singlecell: "size", height: h });
    }
  };
}

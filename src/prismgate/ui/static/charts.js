// Small SVG charts drawn by hand (no chart library, nothing from a CDN). Every bar has a
// <title> (its label and value, read by screen readers and shown on hover) and its value
// written as text, so the numbers can be read without the picture.

const SVG = "http://www.w3.org/2000/svg";

/** An SVG element: s("rect", {x: 1, class: "bar"}, child, "text"). */
function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/**
 * Vertical bars, one per point, in order (days): points are [{label, value}]; `format`
 * writes a value. Every `labelEvery`-th label is written under its bar.
 */
export function columnChart(points, { title, format = String, labelEvery = 1 } = {}) {
  const width = 960;
  const height = 200;
  const top = 22;
  const bottom = 26;
  const plot = height - top - bottom;
  const most = Math.max(...points.map((p) => p.value), 0);
  const step = width / Math.max(points.length, 1);
  const barWidth = Math.max(2, step * 0.72);
  const bars = points.map((point, i) => {
    const tall = most > 0 ? (point.value / most) * plot : 0;
    const x = i * step + (step - barWidth) / 2;
    const y = top + plot - tall;
    const shown = `${point.label}: ${format(point.value)}`;
    const labelled = i % labelEvery === 0 || i === points.length - 1;
    return s(
      "g",
      { class: "column" },
      s("title", {}, shown),
      // An invisible full-height target, so a short bar is still easy to point at.
      s("rect", { class: "hit", x: i * step, y: top, width: step, height: plot }),
      s("rect", {
        class: "bar",
        x,
        y,
        width: barWidth,
        height: Math.max(tall, point.value > 0 ? 1 : 0),
        rx: 2,
      }),
      point.value > 0 && points.length <= 14
        ? s(
            "text",
            { class: "value", x: x + barWidth / 2, y: y - 4, "text-anchor": "middle" },
            format(point.value),
          )
        : null,
      labelled
        ? s(
            "text",
            { class: "axis", x: x + barWidth / 2, y: height - 8, "text-anchor": "middle" },
            point.label,
          )
        : null,
    );
  });
  return s(
    "svg",
    { class: "chart columns", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title },
    s("title", {}, title),
    s("line", { class: "baseline", x1: 0, x2: width, y1: top + plot, y2: top + plot }),
    bars,
  );
}

/**
 * Horizontal bars, largest first as given: rows are [{label, value, note}]; the label
 * sits left of its bar and the value (and note) right of it.
 */
export function barChart(rows, { title, format = String } = {}) {
  const width = 400;
  const rowHeight = 26;
  const labelWidth = 110;
  const valueWidth = 118;
  const plot = width - labelWidth - valueWidth;
  const most = Math.max(...rows.map((r) => r.value), 0);
  const height = Math.max(rows.length, 1) * rowHeight + 6;
  const drawn = rows.map((row, i) => {
    const y = i * rowHeight + 4;
    const long = most > 0 ? (row.value / most) * plot : 0;
    const value = format(row.value) + (row.note ? ` · ${row.note}` : "");
    return s(
      "g",
      { class: "row" },
      s("title", {}, `${row.label}: ${value}`),
      s(
        "text",
        { class: "label", x: labelWidth - 8, y: y + rowHeight / 2 + 4, "text-anchor": "end" },
        clip(row.label, 16),
      ),
      s("rect", {
        class: "track",
        x: labelWidth,
        y: y + 5,
        width: plot,
        height: rowHeight - 12,
        rx: 3,
      }),
      s("rect", {
        class: "bar",
        x: labelWidth,
        y: y + 5,
        width: Math.max(long, row.value > 0 ? 2 : 0),
        height: rowHeight - 12,
        rx: 3,
      }),
      s("text", { class: "value", x: labelWidth + plot + 8, y: y + rowHeight / 2 + 4 }, value),
    );
  });
  return s(
    "svg",
    { class: "chart bars", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title },
    s("title", {}, title),
    drawn,
  );
}

function clip(text, most) {
  const value = String(text);
  return value.length > most ? `${value.slice(0, most - 1)}…` : value;
}

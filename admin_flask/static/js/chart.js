// The status card's chart, drawn as SVG by the page itself: calls per interval as bars (failed
// ones in red on top) and the p95 duration as a line on its own scale.

import { svg } from "./dom.js";
import { compact, dateTime, duration, t } from "./i18n.js";

const W = 560;
const H = 120;
const PAD = { left: 34, right: 44, top: 10, bottom: 18 };

export function seriesChart(series) {
  const root = svg("svg", {
    class: "chart",
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-label": t("chart.label"),
  });
  if (!series || !series.some((bucket) => bucket.calls > 0)) {
    root.appendChild(svg("text", { x: W / 2, y: H / 2, class: "chart-empty", "text-anchor": "middle" }, t("chart.empty")));
    return root;
  }
  const innerW = W - PAD.left - PAD.right;
  const innerH = H - PAD.top - PAD.bottom;
  const maxCalls = Math.max(1, ...series.map((b) => b.calls));
  const maxP95 = Math.max(1, ...series.map((b) => b.p95_duration_ms || 0));
  const step = innerW / series.length;
  const barW = Math.max(1, step * 0.78);
  const y = (value, max) => PAD.top + innerH - (innerH * value) / max;

  for (const fraction of [0, 0.5, 1]) {
    const gy = PAD.top + innerH * (1 - fraction);
    root.appendChild(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: gy, y2: gy, class: "grid" }));
  }
  series.forEach((bucket, i) => {
    const x = PAD.left + i * step + (step - barW) / 2;
    const okHeight = (innerH * (bucket.calls - (bucket.failed || 0))) / maxCalls;
    const failHeight = (innerH * (bucket.failed || 0)) / maxCalls;
    const group = svg("g", { class: "bucket" });
    group.appendChild(
      svg("title", {}, t("chart.bucket", {
        time: dateTime(bucket.start, { seconds: false }),
        calls: compact(bucket.calls),
        failed: compact(bucket.failed || 0),
        p95: duration(bucket.p95_duration_ms),
      })),
    );
    group.appendChild(svg("rect", { x, y: PAD.top, width: barW, height: innerH, class: "hit" }));
    if (okHeight > 0) group.appendChild(svg("rect", { x, y: PAD.top + innerH - okHeight, width: barW, height: okHeight, class: "bar" }));
    if (failHeight > 0) {
      group.appendChild(svg("rect", { x, y: PAD.top + innerH - okHeight - failHeight, width: barW, height: failHeight, class: "bar-failed" }));
    }
    root.appendChild(group);
  });
  const points = series
    .map((bucket, i) => (bucket.p95_duration_ms === null || bucket.p95_duration_ms === undefined
      ? null
      : `${(PAD.left + i * step + step / 2).toFixed(1)},${y(bucket.p95_duration_ms, maxP95).toFixed(1)}`))
    .filter(Boolean);
  if (points.length > 1) root.appendChild(svg("polyline", { points: points.join(" "), class: "p95-line" }));
  for (const point of points) {
    const [cx, cy] = point.split(",");
    root.appendChild(svg("circle", { cx, cy, r: 1.8, class: "p95-dot" }));
  }
  root.appendChild(svg("text", { x: PAD.left - 4, y: PAD.top + 4, class: "axis", "text-anchor": "end" }, compact(maxCalls)));
  root.appendChild(svg("text", { x: PAD.left - 4, y: PAD.top + innerH, class: "axis", "text-anchor": "end" }, "0"));
  root.appendChild(svg("text", { x: W - PAD.right + 4, y: PAD.top + 4, class: "axis axis-p95" }, duration(maxP95)));
  root.appendChild(svg("text", { x: PAD.left, y: H - 4, class: "axis" }, dateTime(series[0].start, { seconds: false })));
  root.appendChild(
    svg("text", { x: W - PAD.right, y: H - 4, class: "axis", "text-anchor": "end" }, dateTime(series.at(-1).start, { seconds: false })),
  );
  return root;
}

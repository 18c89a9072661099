// The receptive field of a unit as the reader picks a layer (Chapter 2).
// book/interactive.py inlines this file into the notebook's output and calls draw(root, data):
// root is the figure's <div>, data the JSON the cell wrote from googlenet.receptive.receptive_fields
// (per variant, per layer: field size, jump and the centre of unit 0's field, all in input pixels,
// and the side of the layer's map). Coordinates are pixel indices: pixel i is the unit square
// centred on i, so the image spans -0.5 to N - 0.5 and unit i of a row is centred on start + i * jump.

function draw(root, data) {
  const SVG = "http://www.w3.org/2000/svg";
  const N = data.input;
  const colors = data.colors;

  function el(tag, attrs = {}, children = [], ns = null) {
    const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }
  const svgEl = (tag, attrs = {}) => el(tag, attrs, [], SVG);

  const state = { variant: data.default.variant, layer: data.default.layer, unit: null };
  const layers = () => data.variants[state.variant];
  const current = () => layers().find((l) => l.name === state.layer);
  const centre = (l, i) => l.start + i * l.jump;  // as interactive.unit_centres
  const neighbour = (l, i) => (i + 1 < l.side ? i + 1 : i - 1);  // as interactive.neighbour

  const variant = el("select", { "data-control": "variant", "aria-label": "network variant" },
    Object.keys(data.variants).map((v) => el("option", { value: v, text: `${v} variant` })));
  const layer = el("select", { "data-control": "layer", "aria-label": "layer" });
  const slider = el("input", { type: "range", min: 0, step: 1, "data-control": "layer-index",
                               "aria-label": "layer", style: "width:14rem" });
  const svg = svgEl("svg", { width: 360, height: 360, "data-key": "canvas", tabindex: 0,
                             role: "img", style: "border:1px solid #ddd;cursor:crosshair",
                             "aria-label": "the unit's receptive field; arrow keys move the unit" });
  const readout = el("p", { "data-key": "readout" });

  function fillLayers() {
    layer.replaceChildren(...layers().map((l) => el("option", { value: l.name, text: l.name })));
    slider.max = layers().length - 1;
  }

  variant.addEventListener("change", () => { state.variant = variant.value; fillLayers(); update(); });
  layer.addEventListener("change", () => { state.layer = layer.value; state.unit = null; update(); });
  slider.addEventListener("input", () => {
    state.layer = layers()[Number(slider.value)].name;
    state.unit = null;
    update();
  });
  svg.addEventListener("click", (event) => {
    const l = current();
    const p = svg.createSVGPoint();
    p.x = event.clientX;
    p.y = event.clientY;
    const q = p.matrixTransform(svg.getScreenCTM().inverse());
    const index = (v) => Math.min(l.side - 1, Math.max(0, Math.round((v - centre(l, 0)) / l.jump)));
    state.unit = [index(q.x), index(q.y)];
    update();
  });
  const steps = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  svg.addEventListener("keydown", (event) => {
    const step = steps[event.key];
    if (!step) return;
    event.preventDefault();  // the arrows move the unit, not the page
    const l = current();
    const mid = Math.floor((l.side - 1) / 2);
    const [i, j] = state.unit || [mid, mid];
    const clamp = (v) => Math.min(l.side - 1, Math.max(0, v));
    state.unit = [clamp(i + step[0]), clamp(j + step[1])];
    update();
  });

  function square(x, y, size, attrs) {
    return svgEl("rect", { x: x - size / 2, y: y - size / 2, width: size, height: size, ...attrs });
  }

  function update() {
    const l = current();
    variant.value = state.variant;
    layer.value = l.name;
    slider.value = layers().indexOf(l);
    slider.setAttribute("aria-valuetext", l.name);
    const mid = Math.floor((l.side - 1) / 2);
    const [i, j] = state.unit || [mid, mid];
    const cx = centre(l, i), cy = centre(l, j), nx = centre(l, neighbour(l, i));
    const lo = Math.min(-0.5, cx - l.size / 2, nx - l.size / 2, cy - l.size / 2) - 8;
    const hi = Math.max(N - 0.5, cx + l.size / 2, nx + l.size / 2, cy + l.size / 2) + 8;
    svg.setAttribute("viewBox", `${lo} ${lo} ${hi - lo} ${hi - lo}`);
    const dot = Math.max(0.35, Math.min(3, l.jump / 6)) * (hi - lo) / N;
    const dots = svgEl("g", { fill: "#888", "data-key": "centres" });
    for (let a = 0; a < l.side; a++) {
      for (let b = 0; b < l.side; b++) {
        dots.append(svgEl("circle", { cx: centre(l, a), cy: centre(l, b), r: dot / 2 }));
      }
    }
    const stroke = (hi - lo) / 300;
    svg.replaceChildren(
      svgEl("rect", { x: -0.5, y: -0.5, width: N, height: N, fill: "#f3f3f3", stroke: "#333",
                      "stroke-width": stroke, "data-key": "image" }),
      dots,
      square(nx, cy, l.size, { fill: "none", stroke: colors[1], "stroke-width": stroke,
                                        "stroke-dasharray": `${4 * stroke} ${3 * stroke}`,
                                        "data-key": "neighbour" }),
      square(cx, cy, l.size, { fill: colors[0], "fill-opacity": 0.25, stroke: colors[0],
                               "stroke-width": stroke, "data-key": "field" }),
      svgEl("circle", { cx, cy, r: Math.max(dot, 2.5 * stroke), fill: colors[3], "data-key": "unit" }),
    );
    const overlap = Math.max(0, l.size - l.jump);
    const past = l.size > N ? ` The field is wider than the ${N}-px image.` : "";
    readout.replaceChildren(
      el("b", { text: l.name }), `: receptive field `,
      el("span", { "data-key": "size", text: l.size }), ` x ${l.size} px; jump `,
      el("span", { "data-key": "jump", text: l.jump }), ` px between neighbouring units, on a `,
      el("span", { "data-key": "side", text: l.side }), ` x ${l.side} grid; neighbours' fields ` +
      `overlap by ${overlap} px. Unit (${i}, ${j}) is shown (column, row, from 0 at the top ` +
      `left), centred on pixel (${cx}, ${cy}).${past}`,
    );
  }

  fillLayers();
  root.querySelector(".gn-fallback").replaceChildren(
    el("div", {}, [variant, " ", layer, " ", slider]), svg, readout);
  update();
}

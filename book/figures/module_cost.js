// The Inception module's cost as the reader moves its widths (Chapter 3).
// book/interactive.py inlines this file into the notebook's output and calls draw(root, data):
// root is the figure's <div>, data the JSON the cell wrote (presets from googlenet's Table 1 rows).
// The formulas are the chapter's: params k*k*cIn*cOut + cOut, multiply-adds H*W*cOut*k*k*cIn.

function draw(root, data) {
  const fmt = (n) => n.toLocaleString("en-US");

  function el(tag, attrs = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function conv(cIn, cOut, k, grid) {
    return [k * k * cIn * cOut + cOut, grid * grid * cOut * k * k * cIn];
  }

  function chain(...costs) {
    return costs.reduce((a, b) => [a[0] + b[0], a[1] + b[1]], [0, 0]);
  }

  function costs(s) {
    const [n1, r3, n3, r5, n5, proj] = s.widths;
    const c = s.c_in, g = s.grid;
    return {
      reduced: [conv(c, n1, 1, g), chain(conv(c, r3, 1, g), conv(r3, n3, 3, g)),
                chain(conv(c, r5, 1, g), conv(r5, n5, 5, g)), conv(c, proj, 1, g)],
      naive: [conv(c, n1, 1, g), conv(c, n3, 3, g), conv(c, n5, 5, g), [0, 0]],
      out: { reduced: n1 + n3 + n5 + proj, naive: n1 + n3 + n5 + c },
    };
  }

  const presets = Object.fromEntries(data.presets.map((p) => [p.name, p]));
  const first = presets[data.default];
  const state = { c_in: first.c_in, grid: first.grid, widths: first.widths.slice() };

  // controls: a preset menu, then a slider and a number box for each of the eight sizes
  const select = el("select", { "data-control": "preset", "aria-label": "Table 1 module" },
    [...data.presets.map((p) => el("option", { value: p.name, text: p.name })),
     el("option", { value: "custom", text: "(your own widths)" })]);
  select.value = data.default;
  const sizes = [
    { key: "c_in", label: "input channels", max: data.limits.c_in },
    { key: "grid", label: "grid (H = W)", max: data.limits.grid },
    ...data.labels.map((label, i) => ({ key: i, label, max: data.limits.width })),
  ];
  const inputs = {};
  const grid = el("div", { class: "gn-controls" });
  const get = (key) => (typeof key === "number" ? state.widths[key] : state[key]);
  const set = (key, v) => { if (typeof key === "number") state.widths[key] = v; else state[key] = v; };
  for (const size of sizes) {
    const range = el("input", { type: "range", min: 1, max: size.max, step: 1,
                                "data-control": String(size.key), "aria-label": size.label });
    const box = el("input", { type: "number", min: 1, max: size.max, step: 1,
                              "data-control": String(size.key), "aria-label": size.label });
    for (const input of [range, box]) {
      input.addEventListener("input", () => {
        const v = Math.round(Number(input.value));
        if (input.value === "" || !Number.isFinite(v)) return;  // mid-typing: keep the last value
        set(size.key, Math.min(size.max, Math.max(1, v)));
        select.value = "custom";
        update();
      });
    }
    box.addEventListener("change", () => {  // typed past a limit: show the value in use
      if (box.value !== "") box.value = get(size.key);
    });
    inputs[size.key] = [range, box];
    grid.append(el("label", { text: size.label }), range, box);
  }
  select.addEventListener("change", () => {
    const p = presets[select.value];
    if (!p) return;
    Object.assign(state, { c_in: p.c_in, grid: p.grid, widths: p.widths.slice() });
    update();
  });

  // results: the stacked bars of multiply-adds, the table, the ratios
  const bars = el("div", { class: "gn-bars" });
  const table = el("table");
  const ratio = el("p", { "data-key": "ratio" });
  const legend = el("div", { class: "gn-legend" }, data.branches.map((b, i) => el("span", {
    style: `border-left:0.9em solid ${data.colors[i]};padding-left:0.3em;margin-right:1em`,
    text: `${data.names[i]} branch`,
  })));

  function cell(key, value) {
    return el("td", { "data-key": key, text: fmt(value) });
  }

  function update() {
    for (const size of sizes) {
      for (const input of inputs[size.key]) {
        if (input !== document.activeElement) input.value = get(size.key);  // not under the cursor
      }
    }
    const c = costs(state);
    const models = ["reduced", "naive"];
    const totals = Object.fromEntries(models.map((m) => [m, chain(...c[m])]));
    const widest = Math.max(totals.reduced[1], totals.naive[1]) || 1;
    bars.replaceChildren(...models.map((m) => el("div", {}, [
      el("div", { text: `${m === "reduced" ? "with reductions (2b)" : "naive (2a)"}: ` +
                        `${fmt(totals[m][1])} multiply-adds` }),
      el("div", { class: "gn-bar" }, c[m].map((b, i) => el("span", {
        style: `width:${(100 * b[1]) / widest}%;background:${data.colors[i]}`,
        title: `${data.names[i]} branch: ${fmt(b[1])} multiply-adds`,
      }))),
    ])), legend);
    const head = el("tr", {}, ["branch", "params (2b)", "mult-adds (2b)", "params (2a)",
                               "mult-adds (2a)"].map((t) => el("th", { text: t })));
    const rows = data.branches.map((b, i) => el("tr", {}, [el("td", { text: data.names[i] }),
      ...models.flatMap((m) => [cell(`${m}.params.${b}`, c[m][i][0]),
                                cell(`${m}.macs.${b}`, c[m][i][1])])]));
    const total = el("tr", {}, [el("th", { text: "total" }), ...models.flatMap((m) => [
      cell(`${m}.params.total`, totals[m][0]), cell(`${m}.macs.total`, totals[m][1])])]);
    const across = (key, value) => {  // one number under both columns of its module
      const td = cell(key, value);
      td.colSpan = 2;
      td.style.textAlign = "center";
      return td;
    };
    const out = el("tr", {}, [el("td", { text: "output channels" }),
      across("reduced.out", c.out.reduced), across("naive.out", c.out.naive)]);
    table.replaceChildren(head, ...rows, total, out);
    const times = (a, b) => (b > 0 ? `${(a / b).toFixed(2)}x` : "n/a");
    ratio.textContent = `naive / with reductions: ${times(totals.naive[1], totals.reduced[1])} ` +
      `the multiply-adds, ${times(totals.naive[0], totals.reduced[0])} the parameters`;
  }

  root.querySelector(".gn-fallback").replaceChildren(
    el("div", {}, [el("label", { text: "Table 1 module: " }, [select])]), grid, bars, table, ratio);
  update();
}

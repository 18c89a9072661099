// The microscope of chapter 9: for the layer, branch and channel the reader picks, the channel's
// renders, its strongest and weakest test images and its mean response to each class.
// book/interactive.py inlines this file into the notebook's output and calls draw(root, data):
// root is the figure's <div>, data names the folder of the files that `python -m
// googlenet.microscope` wrote (microscope.json and the sprite sheets), which the HTML book serves
// under _static/ (book/microscope_files.py), and the layer to open. Where the files cannot be
// fetched (Jupyter, Colab, GitHub), the static picture stays.

function draw(root, data) {
  const base = (document.documentElement.dataset.content_root || "../") + data.files;
  const TILE = 96;  // px of a render in the sheet
  const THUMB = 64;  // px of a render in the channel grid
  const el = (tag, props = {}, children = []) => {
    const node = Object.assign(document.createElement(tag), props);
    for (const child of children) node.append(child);
    return node;
  };

  const keyed = (node, key) => { node.dataset.key = key; return node; };  // what tests read

  // One tile of a sprite sheet as a div: `column` of the channel's `row`, shown at `size` px.
  function tile(sheet, row, column, size, extra = "") {
    const div = el("div", {className: "ms-tile " + extra});
    div.style.width = div.style.height = size + "px";
    div.style.backgroundImage = `url("${sheet}")`;
    div.style.backgroundPosition = `-${column * size}px -${row * size}px`;
    div.dataset.src = sheet;
    return div;
  }

  function bars(values, classes) {
    const top = Math.max(...values, 1e-12);
    const chart = el("div", {className: "ms-bars"});
    values.forEach((v, i) => {
      const bar = el("div", {className: "ms-bar", title: `${classes[i]}: ${v.toFixed(3)}`});
      bar.style.height = Math.round(60 * v / top) + "px";
      chart.append(el("div", {className: "ms-barbox"}, [bar, el("span", {textContent: classes[i]})]));
    });
    return chart;
  }

  function show(scope) {
    const layers = Object.keys(scope.layers);
    const controls = el("div", {className: "ms-controls"});
    const layerSelect = el("select", {className: "ms-layer", ariaLabel: "layer"},
      layers.map(name => el("option", {value: name, textContent: name})));
    const branchSelect = el("select", {className: "ms-branch", ariaLabel: "branch"});
    layerSelect.dataset.control = "layer";
    branchSelect.dataset.control = "branch";
    controls.append(el("label", {textContent: "layer "}, [layerSelect]),
                    el("label", {textContent: " branch "}, [branchSelect]));
    const grid = el("div", {className: "ms-grid"});
    const detail = el("div", {className: "ms-detail"});
    root.querySelector(".gn-fallback").replaceChildren(controls, grid, detail);
    const count = scope.diverse + 1;

    // The CSS background-size of a whole sheet of `rows` x `columns` tiles shown at `size` px.
    const sheetSize = (columns, rows, size) => `${columns * size}px ${rows * size}px`;

    function pick(layer, ch) {
      const info = scope.layers[layer];
      const rows = info.channels.filter(c => c.sheet === ch.sheet).length;
      const renders = base + ch.sheet + ".jpg", images = base + ch.sheet + ".png";
      const shown = scope.strongest + scope.weakest;
      const big = tile(renders, ch.row, 0, 2 * TILE, "ms-main");
      big.style.backgroundSize = sheetSize(count, rows, 2 * TILE);
      const diverse = el("div", {className: "ms-row"});
      for (let j = 1; j < count; j++) {
        const t = tile(renders, ch.row, j, TILE, "ms-diverse");
        t.style.backgroundSize = sheetSize(count, rows, TILE);
        diverse.append(t);
      }
      const strip = (from, to, label) => {
        const row = el("div", {className: "ms-row"}, [el("span", {className: "ms-label", textContent: label})]);
        for (let j = from; j < to; j++) {
          const t = tile(images, ch.row, j, 56, "ms-image");
          t.style.backgroundSize = sheetSize(shown, rows, 56);
          row.append(t);
        }
        return row;
      };
      const beat = ch.render > ch.best_test ? "above" : "below";
      detail.replaceChildren(
        keyed(el("h4", {className: "ms-title",
                        textContent: `${layer} channel ${ch.channel} (${ch.branch})`}), "title"),
        el("div", {className: "ms-columns"}, [
          el("div", {}, [big, diverse]),
          el("div", {}, [
            keyed(el("p", {className: "ms-numbers", textContent:
              `render ${ch.render.toFixed(2)} before the ReLU, ${beat} the strongest test image's ` +
              `${ch.best_test.toFixed(2)}; class selectivity ${ch.selectivity.toFixed(2)} ` +
              `(test images)${ch.dead ? "; never fires on a test image" : ""}`}), "numbers"),
            strip(0, scope.strongest, "strongest"),
            strip(scope.strongest, shown, "weakest"),
            bars(ch.class_means, scope.classes),
          ]),
        ]));
      grid.querySelectorAll(".ms-thumb").forEach(t => t.classList.toggle(
        "ms-picked", Number(t.dataset.channel) === ch.channel));
    }

    function fillGrid() {
      const layer = layerSelect.value, info = scope.layers[layer];
      const branch = branchSelect.value;
      const channels = info.channels.filter(c => branch === "all" || c.branch === branch);
      grid.replaceChildren(...channels.map(ch => {
        const rows = info.channels.filter(c => c.sheet === ch.sheet).length;
        const t = tile(base + ch.sheet + ".jpg", ch.row, 0, THUMB, "ms-thumb");
        t.style.backgroundSize = sheetSize(count, rows, THUMB);
        t.dataset.channel = ch.channel;
        t.title = `${ch.branch} channel ${ch.channel}`;
        t.addEventListener("click", () => pick(layer, ch));
        return el("figure", {}, [t, el("figcaption", {textContent: `${ch.channel}`})]);
      }));
      pick(layer, channels[0]);
    }

    function fillBranches() {
      const names = [...new Set(scope.layers[layerSelect.value].channels.map(c => c.branch))];
      branchSelect.replaceChildren(...["all", ...names].map(
        name => el("option", {value: name, textContent: name})));
      branchSelect.disabled = names.length < 2;
      fillGrid();
    }

    layerSelect.addEventListener("change", fillBranches);
    branchSelect.addEventListener("change", fillGrid);
    layerSelect.value = data.layer || layers[0];
    fillBranches();
    root.classList.add("microscope", "ms-ready");
  }

  fetch(base + "microscope.json")
    .then(response => { if (!response.ok) throw new Error(response.status); return response.json(); })
    .then(show)
    .catch(() => {});  // no files here: the static picture stays
}

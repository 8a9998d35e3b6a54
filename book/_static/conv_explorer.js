/* The interactive convolution of the sizing chapter (book/sizing.md, "Try it"): one axis of a
   convolution or pooling window. Controls: input size W, kernel F, stride S, dilation D and the
   padding ("valid", TensorFlow's "same", or P zeros on each side). Shown: the output size, the
   zeros added before and after the input, the rule that gives the size, and a drawing of the
   padded input with the kernel's taps sliding over it, one output position at a time.

   The arithmetic is the chapter's (cnnbook.counting.sizing.conv_output_size and same_padding);
   tests/test_site_browser.py drives these controls over a sweep and checks every displayed
   number against those functions. Plain JavaScript, no library: the site works offline. */
(function () {
  "use strict";

  const LIMITS = {size: [1, 40], kernel: [1, 11], stride: [1, 6], dilation: [1, 4], pad: [0, 6]};
  const STEP_MS = 900;
  const SVG_NS = "http://www.w3.org/2000/svg";

  /* Output size and padding along one axis; {error} when the window does not fit. */
  function convAxis(size, kernel, stride, dilation, padding, pad) {
    const span = dilation * (kernel - 1) + 1;
    if (padding === "same") {
      const out = Math.ceil(size / stride);
      const total = Math.max((out - 1) * stride + span - size, 0);
      const before = Math.floor(total / 2);
      return {span, out, before, after: total - before,
              rule: `ceil(W / S) = ceil(${size} / ${stride}) = ${out}; TensorFlow pads ` +
                    `max((${out} − 1)·${stride} + ${span} − ${size}, 0) = ${total} zeros, ` +
                    `${before} before and ${total - before} after`};
    }
    const each = padding === "explicit" ? pad : 0;
    const padded = size + 2 * each;
    if (span > padded) {
      return {span, before: each, after: each,
              error: `the kernel (dilated span ${span}) does not fit in the padded input of ` +
                     `size ${padded}: use a smaller kernel, more padding, or "same"`};
    }
    const out = Math.floor((padded - span) / stride) + 1;
    const dropped = (padded - span) % stride;
    return {span, out, before: each, after: each,
            rule: `floor((W − F_eff + 2P) / S) + 1 = floor((${size} − ${span} + 2·${each}) / ` +
                  `${stride}) + 1 = ${out}` +
                  (dropped ? `; the last ${dropped} padded position${dropped > 1 ? "s are" : " is"}` +
                             " never reached (the window does not fit)" : "")};
  }

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svgElement(tag, attributes) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    return node;
  }

  function numberControl(name, label, value) {
    const [min, max] = LIMITS[name];
    const wrapper = element("label", {class: "conv-control"});
    wrapper.append(element("span", {}, label));
    const input = element("input", {type: "number", name, min, max, step: 1, value});
    wrapper.append(input);
    return [wrapper, input];
  }

  function build(root) {
    root.textContent = "";
    const controls = element("div", {class: "conv-controls"});
    const [sizeBox, size] = numberControl("size", "input size W", 7);
    const [kernelBox, kernel] = numberControl("kernel", "kernel F", 3);
    const [strideBox, stride] = numberControl("stride", "stride S", 2);
    const [dilationBox, dilation] = numberControl("dilation", "dilation D", 1);
    const paddingBox = element("label", {class: "conv-control"});
    paddingBox.append(element("span", {}, "padding"));
    const padding = element("select", {name: "padding"});
    for (const [value, text] of [["valid", "\"valid\" (none)"], ["same", "\"same\" (TensorFlow)"],
                                 ["explicit", "P zeros on each side"]]) {
      padding.append(element("option", {value}, text));
    }
    paddingBox.append(padding);
    const [padBox, pad] = numberControl("pad", "P", 1);
    controls.append(sizeBox, kernelBox, strideBox, dilationBox, paddingBox, padBox);

    const results = element("div", {class: "conv-results", "aria-live": "polite"});
    const outputLine = element("p");
    outputLine.append("Output size: ", element("strong", {"data-role": "output-size"}),
                      ", kernel span F_eff = D(F − 1) + 1 = ",
                      element("span", {"data-role": "span"}),
                      ". Zeros before the input: ", element("span", {"data-role": "pad-before"}),
                      ", after it: ", element("span", {"data-role": "pad-after"}), ".");
    const rule = element("p", {class: "conv-rule", "data-role": "rule"});
    const error = element("p", {class: "conv-error", "data-role": "error", role: "alert"});
    results.append(outputLine, rule, error);

    const drawing = element("div", {class: "conv-drawing"});
    const playing = element("button", {type: "button", "data-role": "play"}, "Pause");
    const caption = element("p", {class: "conv-caption", "data-role": "caption"});

    root.append(controls, results, drawing, caption, playing);

    let state = null;
    let position = 0;
    let timer = null;

    function read(input) {
      const [min, max] = LIMITS[input.name];
      const value = Math.round(Number(input.value));
      return Number.isFinite(value) ? Math.min(max, Math.max(min, value)) : min;
    }

    function draw() {
      drawing.textContent = "";
      if (!state || state.error) return;
      const {size, before, after, out, span, strideValue, dilationValue, kernelValue} = state;
      const cells = before + size + after;
      const cell = Math.max(10, Math.min(28, Math.floor(760 / Math.max(cells, 1))));
      const width = cells * cell + 2;
      const svg = svgElement("svg", {width, height: 3 * cell + 44, role: "img",
                                     viewBox: `0 0 ${width} ${3 * cell + 44}`,
                                     "aria-label": `padded input of ${cells} positions and ` +
                                                   `${out} output positions`});
      const start = position * strideValue;
      for (let index = 0; index < cells; index++) {
        const isPad = index < before || index >= before + size;
        const tap = index >= start && index < start + span && (index - start) % dilationValue === 0;
        svg.append(svgElement("rect", {
          x: 1 + index * cell, y: 14, width: cell - 2, height: cell - 2,
          class: isPad ? "conv-pad" : "conv-input", "data-role": isPad ? "pad-cell" : "input-cell",
          "data-tap": tap ? "yes" : "no"}));
        if (tap) {
          svg.append(svgElement("rect", {x: 1 + index * cell, y: 14, width: cell - 2,
                                         height: cell - 2, class: "conv-tap"}));
        }
      }
      svg.append(svgElement("rect", {x: 1 + start * cell - 1, y: 12, width: span * cell,
                                     height: cell + 2, class: "conv-window",
                                     "data-role": "window", "data-position": position}));
      const outputLeft = Math.max(1, (width - out * cell) / 2);
      for (let index = 0; index < out; index++) {
        svg.append(svgElement("rect", {
          x: outputLeft + index * cell, y: 2 * cell + 30, width: cell - 2, height: cell - 2,
          class: index === position ? "conv-output conv-current" : index < position ?
            "conv-output conv-done" : "conv-output", "data-role": "output-cell"}));
      }
      const line = svgElement("line", {x1: 1 + start * cell + span * cell / 2, y1: cell + 14,
                                       x2: outputLeft + position * cell + cell / 2 - 1,
                                       y2: 2 * cell + 30, class: "conv-link"});
      svg.append(line);
      drawing.append(svg);
      caption.textContent = `Output position ${position + 1} of ${out}: the window covers ` +
        `padded positions ${start + 1} to ${start + span}` +
        (kernelValue > 1 && dilationValue > 1 ? ` (${kernelValue} taps, ${dilationValue} apart)`
                                              : "") + ".";
    }

    function update() {
      pad.disabled = padding.value !== "explicit";
      padBox.classList.toggle("conv-disabled", pad.disabled);
      const values = {size: read(size), kernel: read(kernel), stride: read(stride),
                      dilation: read(dilation), pad: read(pad)};
      const result = convAxis(values.size, values.kernel, values.stride, values.dilation,
                              padding.value, values.pad);
      state = {...result, size: values.size, strideValue: values.stride,
               dilationValue: values.dilation, kernelValue: values.kernel};
      position = 0;
      root.querySelector("[data-role=output-size]").textContent =
        result.error ? "none" : String(result.out);
      root.querySelector("[data-role=span]").textContent = String(result.span);
      root.querySelector("[data-role=pad-before]").textContent = String(result.before);
      root.querySelector("[data-role=pad-after]").textContent = String(result.after);
      rule.textContent = result.error ? "" : result.rule +
        (values.stride > 1 && values.dilation > 1
          ? ". (Keras' Conv2D refuses a stride above 1 together with a dilation above 1; the " +
            "arithmetic is the same.)" : "");
      error.textContent = result.error || "";
      draw();
    }

    function step() {
      if (state && !state.error && state.out > 0) {
        position = (position + 1) % state.out;
        draw();
      }
    }

    function play(on) {
      if (timer) clearInterval(timer);
      timer = on ? setInterval(step, STEP_MS) : null;
      playing.textContent = on ? "Pause" : "Play";
    }

    for (const input of [size, kernel, stride, dilation, pad]) {
      input.addEventListener("input", update);
      input.addEventListener("change", update);
    }
    padding.addEventListener("change", update);
    playing.addEventListener("click", () => play(!timer));
    update();
    play(!window.matchMedia("(prefers-reduced-motion: reduce)").matches);
  }

  function start() {
    document.querySelectorAll("[data-conv-explorer]").forEach(build);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

// Walk the rendered DOM and return each element's box and content, in viewport pixels.
// Visibility is decided here, where the computed style is known: display:none / opacity:0
// prune a subtree; visibility:hidden hides an element's own text (children may override it);
// ancestors with overflow other than "visible" clip what lies inside them.
() => {
  const W = window.innerWidth, H = window.innerHeight;
  const MIN = 2;  // a fragment narrower or shorter than this (after clipping) is not visible
  const inter = (a, b) => [Math.max(a[0], b[0]), Math.max(a[1], b[1]), Math.min(a[2], b[2]), Math.min(a[3], b[3])];
  const visible = (r) => r[2] - r[0] >= MIN && r[3] - r[1] >= MIN;
  const round = (r) => r.map((v) => Math.round(v * 100) / 100);
  const textOf = (s) => s.replace(/\s+/g, " ").trim();

  function controlText(el, tag) {
    if (tag === "select") return el.selectedIndex >= 0 ? el.options[el.selectedIndex].text : "";
    if (tag === "textarea") return el.value || el.placeholder || "";
    const type = (el.getAttribute("type") || "text").toLowerCase();
    if (["hidden", "checkbox", "radio", "file", "range", "color", "image"].includes(type)) return "";
    if (["submit", "button", "reset"].includes(type)) return el.value || "";
    return el.value || el.placeholder || "";
  }

  function walk(el, clip) {
    const st = getComputedStyle(el);
    if (st.display === "none" || parseFloat(st.opacity) === 0) return null;
    const tag = el.tagName.toLowerCase();
    if (["script", "style", "noscript", "template", "head", "meta", "link"].includes(tag)) return null;
    const b = el.getBoundingClientRect();
    const box = [b.left, b.top, b.right, b.bottom];
    const shown = st.visibility === "visible";
    const node = { tag, box: round(box), children: [] };
    if (tag === "img" || tag === "svg" || tag === "canvas" || tag === "video") {
      const vis = inter(box, clip);
      if (!shown || !visible(vis)) return null;
      node.tag = "img";
      node.src = tag === "img" ? (el.getAttribute("src") || "") : "";
      node.alt = tag === "img" ? (el.getAttribute("alt") || "") : (el.getAttribute("aria-label") || "");
      node.rects = [round(vis)];
      return node;
    }
    if (["input", "select", "textarea"].includes(tag)) {
      const t = textOf(controlText(el, tag));
      const vis = inter(box, clip);
      if (!shown || !t || !visible(vis)) return null;
      node.children.push({ text: t, rects: [round(vis)] });
      return node;
    }
    let inner = clip;
    if (st.overflowX !== "visible" || st.overflowY !== "visible") inner = inter(clip, box);
    for (const c of el.childNodes) {
      if (c.nodeType === Node.TEXT_NODE) {
        if (!shown) continue;
        const t = textOf(c.textContent);
        if (!t) continue;
        const range = document.createRange();
        range.selectNodeContents(c);
        const rects = [...range.getClientRects()]
          .map((r) => inter([r.left, r.top, r.right, r.bottom], inner))
          .filter(visible).map(round);
        if (rects.length) node.children.push({ text: t, rects });
      } else if (c.nodeType === Node.ELEMENT_NODE) {
        const k = walk(c, inner);
        if (k) node.children.push(k);
      }
    }
    return node;
  }
  return { width: W, height: H, root: walk(document.body, [0, 0, W, H]) };
}

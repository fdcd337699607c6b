// brachycryo report viewer: slices (CT, a scalar field - dose or temperature -, structures,
// seeds, instruments) and DVH. Data come from the page's <script type="application/json">
// blocks (see viewer.py): "bc-data" (the slice viewer) and "bc-dvh-data" (the DVH); a page
// may carry either or both.
// Test hook: the URL hash holds actions (view=, slider=N, keys=ArrowUp,..., wheel=N, toggle=NAME,
// wash=1, levels=50,100, wl=L,W, instruments=0, compare=0, probe=x,y,z (mm, LPS), dvh_toggle=NAME,
// dvh_hover=Gy, solo=1 (the image only) or 2 (with its controls)), applied through the same
// DOM events as a user; the page then writes its state as JSON into <pre id="bc-state">.
(function () {
  "use strict";
  function json(id) { const e = document.getElementById(id); return e ? JSON.parse(e.textContent) : null; }
  function bytes(s) {
    const bin = atob(s);
    const u = new Uint8Array(bin.length);
    for (let n = 0; n < bin.length; n++) u[n] = bin.charCodeAt(n);
    return u;
  }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function swatch(colour, dashed) { // a line sample in the layer's colour (on a grey ground)
    return el("span", { style: "display:inline-block;width:1.6em;height:0;vertical-align:middle;margin:0 0.3em;" +
      "border-top:3px " + (dashed ? "dashed" : "solid") + " rgb(" + colour.join(",") + ");outline:1px solid #999" });
  }
  let V = null, G = null;
  function writeState() {
    const st = Object.assign({}, V ? V.state() : {}, G ? G.state() : {});
    document.getElementById("bc-state").textContent = JSON.stringify(st);
  }

  // ---- slice viewer (canvas) ----
  function makeViewer(D) {
    const F = D.field; // the scalar field: name, unit, relative (levels in % of D.rx), wash_below
    const ct = bytes(D.ct.b64);
    const [NK, NJ, NI] = D.ct.shape;
    function makeField(G) { // a field's values (float) and geometry from its page data
      const [K, J, I] = G.shape, v = new Float32Array(K * J * I);
      const dv = new DataView(bytes(G.b64).buffer);
      for (let n = 0; n < v.length; n++) v[n] = G.offset + dv.getUint16(2 * n, true) * G.scale;
      return { v: v, I: I, J: J, K: K, inv: G.inv_affine, outside: G.outside };
    }
    const HAS = !!D.dose;
    const FLD = HAS ? makeField(D.dose) : null;
    const CMP = HAS && D.compare ? makeField(D.compare) : null; // e.g. the pre-plan's dose
    const A = D.ct.affine; // 3x4 row-major: mm = A [i j k 1]
    const [SX, SY, SZ] = D.spacing;
    const layers = D.layers.map(function (L) { return Object.assign({}, L, { data: bytes(L.bits) }); });
    const VIEWS = ["axial", "coronal", "sagittal"];
    const START = D.start || [NK >> 1, NJ >> 1, NI >> 1];
    const S = {
      view: "axial", slice: { axial: START[0], coronal: START[1], sagittal: START[2] },
      wl: [40, 400], levels: D.levels.slice(), wash: false, hidden: new Set(), instruments: true,
      readout: null, iso: {}, isoCompare: {}, compare: !!CMP, edges: {},
    };
    function levelValue(x) { return F.relative ? (D.rx || 0) * x / 100 : x; }
    function mm(i, j, k) {
      return [0, 1, 2].map(function (r) {
        return A[4 * r] * i + A[4 * r + 1] * j + A[4 * r + 2] * k + A[4 * r + 3];
      });
    }
    function fieldIjk(f, p) { // field ijk = inv [x y z 1]
      const Inv = f.inv;
      return [0, 1, 2].map(function (r) {
        return Inv[4 * r] * p[0] + Inv[4 * r + 1] * p[1] + Inv[4 * r + 2] * p[2] + Inv[4 * r + 3];
      });
    }
    function ctIjkOfMm(p) { // inverse of the CT affine (3x3 solve by Cramer's rule)
      const m = [[A[0], A[1], A[2]], [A[4], A[5], A[6]], [A[8], A[9], A[10]]];
      const b = [p[0] - A[3], p[1] - A[7], p[2] - A[11]];
      function det(q) {
        return q[0][0] * (q[1][1] * q[2][2] - q[1][2] * q[2][1]) -
          q[0][1] * (q[1][0] * q[2][2] - q[1][2] * q[2][0]) +
          q[0][2] * (q[1][0] * q[2][1] - q[1][1] * q[2][0]);
      }
      const d0 = det(m);
      return [0, 1, 2].map(function (c) {
        const q = m.map(function (row, r) { return row.map(function (v, cc) { return cc === c ? b[r] : v; }); });
        return det(q) / d0;
      });
    }
    function trilinear(f, g) {
      const x = g[0], y = g[1], z = g[2], DI = f.I, DJ = f.J, DK = f.K, dose = f.v;
      if (x < 0 || y < 0 || z < 0 || x > DI - 1 || y > DJ - 1 || z > DK - 1) return f.outside;
      const i0 = Math.min(Math.floor(x), Math.max(DI - 2, 0)), j0 = Math.min(Math.floor(y), Math.max(DJ - 2, 0));
      const k0 = Math.min(Math.floor(z), Math.max(DK - 2, 0));
      const fx = x - i0, fy = y - j0, fz = z - k0;
      let v = 0;
      for (let c = 0; c < 8; c++) {
        const di = c & 1, dj = (c >> 1) & 1, dk = (c >> 2) & 1;
        const ii = Math.min(i0 + di, DI - 1), jj = Math.min(j0 + dj, DJ - 1), kk = Math.min(k0 + dk, DK - 1);
        const w = (di ? fx : 1 - fx) * (dj ? fy : 1 - fy) * (dk ? fz : 1 - fz);
        if (w) v += w * dose[(kk * DJ + jj) * DI + ii];
      }
      return v;
    }
    function nearest(f, g) {
      const i = Math.round(g[0]), j = Math.round(g[1]), k = Math.round(g[2]);
      if (i < 0 || j < 0 || k < 0 || i >= f.I || j >= f.J || k >= f.K) return null;
      return { value: f.v[(k * f.J + j) * f.I + i], ijk: [i, j, k] };
    }
    // plane geometry: pixel (u, v) of the current view <-> continuous CT index (i, j, k)
    function dims(view) {
      if (view === "axial") return { W: NI, H: NJ, pw: SX, ph: SY, n: NK };
      if (view === "coronal") return { W: NI, H: NK, pw: SX, ph: SZ, n: NJ };
      return { W: NJ, H: NK, pw: SY, ph: SZ, n: NI };
    }
    function toIjk(view, s, u, v) {
      if (view === "axial") return [u, v, s];
      if (view === "coronal") return [u, s, NK - 1 - v];
      return [s, u, NK - 1 - v];
    }
    function toUvd(view, p) { // [u, v, depth] of index point p = [i, j, k]
      if (view === "axial") return [p[0], p[1], p[2]];
      if (view === "coronal") return [p[0], NK - 1 - p[2], p[1]];
      return [p[1], NK - 1 - p[2], p[0]];
    }
    function layerAt(L, i, j, k) {
      const a = k - L.lo[0], b = j - L.lo[1], c = i - L.lo[2];
      if (a < 0 || b < 0 || c < 0 || a >= L.shape[0] || b >= L.shape[1] || c >= L.shape[2]) return 0;
      const n = (a * L.shape[1] + b) * L.shape[2] + c;
      return (L.data[n >> 3] >> (7 - (n & 7))) & 1;
    }
    const canvas = document.getElementById("bc-canvas");
    const ctx = canvas.getContext("2d");
    const off = document.createElement("canvas");
    let geo = null; // current screen geometry
    function washColour(f) { // f in [0, 1]: blue -> green -> yellow -> red
      const r = Math.min(255, Math.max(0, 510 * f - 255)), g = f < 0.75 ? Math.min(255, 510 * f) : 255 * (1 - f) * 4;
      return [r, g, Math.max(0, 255 - 510 * f)];
    }
    function fieldSlice(d, f) {
      const out = new Float32Array(d.W * d.H);
      if (!f) return out;
      const s = S.slice[S.view];
      for (let v = 0; v < d.H; v++) {
        for (let u = 0; u < d.W; u++) {
          const p = toIjk(S.view, s, u, v);
          out[v * d.W + u] = trilinear(f, fieldIjk(f, mm(p[0], p[1], p[2])));
        }
      }
      return out;
    }
    function washRange() { // [lo, hi] of the colour wash (field units)
      const lv = (F.relative ? S.levels.concat([100]) : S.levels).map(levelValue);
      return [Math.min.apply(null, lv), Math.max.apply(null, lv)];
    }
    function washFraction(x, lo, hi) { // null: not washed
      const span = Math.max(hi - lo, 1e-9);
      if (F.wash_below) return x <= hi ? Math.min(1, (hi - x) / span) : null;
      return x >= lo ? Math.min(1, (x - lo) / span) : null;
    }
    function drawImage(d, ds) {
      off.width = d.W; off.height = d.H;
      const octx = off.getContext("2d");
      const img = octx.createImageData(d.W, d.H);
      const lo = S.wl[0] - S.wl[1] / 2, w = S.wl[1], s = S.slice[S.view];
      const wash = S.wash && HAS && (!F.relative || D.rx), wr = washRange();
      for (let v = 0; v < d.H; v++) {
        for (let u = 0; u < d.W; u++) {
          const p = toIjk(S.view, s, u, v);
          const hu = D.ct_hu.min + D.ct_hu.step * ct[(p[2] * NJ + p[1]) * NI + p[0]];
          const g = Math.max(0, Math.min(255, (hu - lo) / w * 255));
          let c = [g, g, g];
          const f = wash ? washFraction(ds[v * d.W + u], wr[0], wr[1]) : null;
          if (f !== null) {
            const wc = washColour(f);
            c = [0.55 * g + 0.45 * wc[0], 0.55 * g + 0.45 * wc[1], 0.55 * g + 0.45 * wc[2]];
          }
          const o = 4 * (v * d.W + u);
          img.data[o] = c[0]; img.data[o + 1] = c[1]; img.data[o + 2] = c[2]; img.data[o + 3] = 255;
        }
      }
      octx.putImageData(img, 0, 0);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
    }
    // marching squares between pixel centres: segments of the level line, in pixel units
    function isoSegments(ds, W, Hh, level) {
      const seg = [];
      function cross(a, b, va, vb) { const t = (level - va) / (vb - va); return [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])]; }
      for (let v = 0; v + 1 < Hh; v++) {
        for (let u = 0; u + 1 < W; u++) {
          const c = [[u, v], [u + 1, v], [u + 1, v + 1], [u, v + 1]];
          const val = [ds[v * W + u], ds[v * W + u + 1], ds[(v + 1) * W + u + 1], ds[(v + 1) * W + u]];
          const pts = [];
          for (let e = 0; e < 4; e++) {
            const a = val[e], b = val[(e + 1) % 4];
            if ((a >= level) !== (b >= level)) pts.push(cross(c[e], c[(e + 1) % 4], a, b));
          }
          if (pts.length === 2) seg.push(pts);
          if (pts.length === 4) { seg.push([pts[0], pts[1]]); seg.push([pts[2], pts[3]]); }
        }
      }
      return seg;
    }
    const ISO_COLOURS = ["#00c0ff", "#ff3030", "#ffa000", "#ff40ff", "#40ff40", "#ffffff"];
    function scr(u, v) { return [(u + 0.5) * geo.sx, (v + 0.5) * geo.sy]; }
    function drawIsolines(d, ds, dashed) { // segment counts by level
      const counts = {};
      if (!HAS || (F.relative && !D.rx)) return counts;
      ctx.setLineDash(dashed ? [5, 4] : []);
      S.levels.forEach(function (x, n) {
        const segs = isoSegments(ds, d.W, d.H, levelValue(x));
        counts[x] = segs.length;
        ctx.strokeStyle = ISO_COLOURS[n % ISO_COLOURS.length]; ctx.lineWidth = 1.5; ctx.beginPath();
        segs.forEach(function (sg) {
          const a = scr(sg[0][0], sg[0][1]), b = scr(sg[1][0], sg[1][1]);
          ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]);
        });
        ctx.stroke();
      });
      ctx.setLineDash([]);
      return counts;
    }
    function uvBox(L) { // the layer's bounding box in the current view: u, v and depth ranges
      const i0 = L.lo[2], i1 = L.lo[2] + L.shape[2] - 1, j0 = L.lo[1], j1 = L.lo[1] + L.shape[1] - 1;
      const v0 = NK - 1 - (L.lo[0] + L.shape[0] - 1), v1 = NK - 1 - L.lo[0];
      if (S.view === "axial") return { u0: i0, u1: i1, v0: j0, v1: j1, d0: L.lo[0], d1: L.lo[0] + L.shape[0] - 1 };
      if (S.view === "coronal") return { u0: i0, u1: i1, v0: v0, v1: v1, d0: j0, d1: j1 };
      return { u0: j0, u1: j1, v0: v0, v1: v1, d0: i0, d1: i1 };
    }
    function drawLayers(d) {
      S.edges = {};
      const s = S.slice[S.view];
      layers.forEach(function (L) {
        const b = uvBox(L);
        if (S.hidden.has(L.name) || s < b.d0 || s > b.d1) { S.edges[L.name] = 0; return; }
        let count = 0;
        ctx.strokeStyle = "rgb(" + L.colour.join(",") + ")"; ctx.lineWidth = 2;
        ctx.setLineDash(L.kind === "isotherm" ? [4, 3] : []);
        ctx.beginPath();
        const inside = function (u, v) {
          if (u < 0 || v < 0 || u >= d.W || v >= d.H) return 0;
          const p = toIjk(S.view, s, u, v);
          return layerAt(L, p[0], p[1], p[2]);
        };
        for (let v = b.v0; v <= b.v1; v++) {
          for (let u = b.u0; u <= b.u1; u++) {
            if (!inside(u, v)) continue;
            const x0 = u * geo.sx, y0 = v * geo.sy, x1 = x0 + geo.sx, y1 = y0 + geo.sy;
            if (!inside(u - 1, v)) { ctx.moveTo(x0, y0); ctx.lineTo(x0, y1); count++; }
            if (!inside(u + 1, v)) { ctx.moveTo(x1, y0); ctx.lineTo(x1, y1); count++; }
            if (!inside(u, v - 1)) { ctx.moveTo(x0, y0); ctx.lineTo(x1, y0); count++; }
            if (!inside(u, v + 1)) { ctx.moveTo(x0, y1); ctx.lineTo(x1, y1); count++; }
          }
        }
        ctx.stroke(); ctx.setLineDash([]);
        S.edges[L.name] = count;
      });
    }
    function clipSegment(a, b, s) { // part of index segment a-b within half a slice of s
      const pa = toUvd(S.view, a), pb = toUvd(S.view, b);
      let t0 = 0, t1 = 1;
      const dd = pb[2] - pa[2];
      if (Math.abs(dd) < 1e-9) { if (Math.abs(pa[2] - s) > 0.5) return null; } else {
        let ta = (s - 0.5 - pa[2]) / dd, tb = (s + 0.5 - pa[2]) / dd;
        if (ta > tb) { const t = ta; ta = tb; tb = t; }
        t0 = Math.max(t0, ta); t1 = Math.min(t1, tb);
        if (t0 > t1) return null;
      }
      const at = function (t) { return [pa[0] + t * (pb[0] - pa[0]), pa[1] + t * (pb[1] - pa[1])]; };
      return [at(t0), at(t1)];
    }
    function drawSegment(seg, colour, width) {
      const a = scr(seg[0][0], seg[0][1]), b = scr(seg[1][0], seg[1][1]);
      ctx.strokeStyle = colour; ctx.lineWidth = width; ctx.beginPath();
      if (Math.hypot(a[0] - b[0], a[1] - b[1]) < 3) { // crossing: a small cross
        ctx.moveTo(a[0] - 4, a[1] - 4); ctx.lineTo(a[0] + 4, a[1] + 4);
        ctx.moveTo(a[0] - 4, a[1] + 4); ctx.lineTo(a[0] + 4, a[1] - 4);
      } else { ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); }
      ctx.stroke();
    }
    function drawInstruments() {
      const s = S.slice[S.view];
      let n = 0;
      S.drawnSeeds = 0; S.drawnTracks = 0;
      if (!S.instruments) return;
      D.instruments.needles.forEach(function (nd) {
        const c = clipSegment(nd[0], nd[1], s); if (c) { drawSegment(c, "#c0c0c0", 1.5); n++; }
      });
      D.instruments.probes.forEach(function (p) {
        const c = clipSegment(p.track[0], p.track[1], s); if (c) { drawSegment(c, "#80e0ff", 2); n++; }
        const a = clipSegment(p.active[0], p.active[1], s); if (a) drawSegment(a, "#00ffff", 4);
      });
      let seeds = 0;
      ctx.fillStyle = "#ff0"; ctx.strokeStyle = "#000"; ctx.lineWidth = 1;
      D.seeds.forEach(function (p) {
        const q = toUvd(S.view, p);
        if (Math.abs(q[2] - s) <= 0.5) {
          const c = scr(q[0], q[1]); ctx.beginPath(); ctx.arc(c[0], c[1], 3, 0, 2 * Math.PI);
          ctx.fill(); ctx.stroke(); seeds++;
        }
      });
      S.drawnSeeds = seeds; S.drawnTracks = n;
    }
    function render() {
      const d = dims(S.view);
      const k = 512 / Math.max(d.W * d.pw, d.H * d.ph);
      canvas.width = Math.round(d.W * d.pw * k); canvas.height = Math.round(d.H * d.ph * k);
      geo = { sx: canvas.width / d.W, sy: canvas.height / d.H, d: d };
      const ds = fieldSlice(d, FLD);
      drawImage(d, ds);
      S.iso = drawIsolines(d, ds, false);
      S.isoCompare = CMP && S.compare ? drawIsolines(d, fieldSlice(d, CMP), true) : {};
      drawLayers(d);
      drawInstruments();
      const sl = document.getElementById("bc-slider");
      if (sl) { sl.max = d.n - 1; sl.value = S.slice[S.view]; }
      const lab = document.getElementById("bc-slice-label");
      if (lab) lab.textContent = S.view + " slice " + (S.slice[S.view] + 1) + " / " + d.n;
      writeState();
    }
    function readoutAtIjk(p) {
      const x = mm(p[0], p[1], p[2]);
      const near = HAS ? nearest(FLD, fieldIjk(FLD, x)) : null;
      const other = CMP ? nearest(CMP, fieldIjk(CMP, x)) : null;
      S.readout = {
        mm: x.map(function (v) { return +v.toFixed(2); }), value: near ? near.value : null, ijk: near ? near.ijk : null,
        compare_value: other ? other.value : null,
      };
      const out = document.getElementById("bc-readout");
      if (out) {
        out.textContent = "LPS (mm): " + S.readout.mm.map(function (v) { return v.toFixed(1); }).join(", ") + "\n" +
          (!HAS ? "no " + F.name + " on this page" : F.name + ": " + (near ? near.value.toFixed(2) + " " + F.unit +
          " (" + F.grid_label + " voxel " + near.ijk.join(",") + ")" : "outside the " + F.grid_label + " grid")) +
          (other ? "\n" + D.compare.label + ": " + other.value.toFixed(2) + " " + F.unit : "");
      }
    }
    function setSlice(n) {
      const d = dims(S.view);
      S.slice[S.view] = Math.max(0, Math.min(d.n - 1, n)); render();
    }
    canvas.tabIndex = 0;
    canvas.addEventListener("wheel", function (e) { e.preventDefault(); setSlice(S.slice[S.view] + (e.deltaY > 0 ? 1 : -1)); });
    canvas.addEventListener("keydown", function (e) {
      const step = { ArrowUp: 1, ArrowRight: 1, PageUp: 10, ArrowDown: -1, ArrowLeft: -1, PageDown: -10 }[e.key];
      if (step) { e.preventDefault(); setSlice(S.slice[S.view] + step); }
    });
    canvas.addEventListener("mousemove", function (e) {
      const r = canvas.getBoundingClientRect();
      const u = (e.clientX - r.left) / geo.sx - 0.5, v = (e.clientY - r.top) / geo.sy - 0.5;
      readoutAtIjk(toIjk(S.view, S.slice[S.view], u, v)); writeState();
    });
    const PRESETS = { "Soft tissue": [40, 400], "Prostate": [40, 250], "Liver": [60, 160], "Lung": [-600, 1500], "Bone": [400, 1800] };
    function setLevels(text) {
      const v = text.split(",").map(Number).filter(function (x) { return isFinite(x) && (!F.relative || x > 0); });
      if (v.length) S.levels = v;
    }
    function buildControls() {
      const box = document.getElementById("bc-controls");
      const fv = el("fieldset"); fv.appendChild(el("legend", {}, "View"));
      VIEWS.forEach(function (v) {
        const b = el("button", { type: "button" }, v); b.addEventListener("click", function () { S.view = v; render(); }); fv.appendChild(b);
      });
      fv.appendChild(el("br"));
      const sl = el("input", { type: "range", id: "bc-slider", min: 0, step: 1 });
      sl.addEventListener("input", function () { setSlice(+sl.value); }); fv.appendChild(sl);
      fv.appendChild(el("span", { id: "bc-slice-label" })); box.appendChild(fv);
      const fw = el("fieldset"); fw.appendChild(el("legend", {}, "CT window / level"));
      const sel = el("select", { id: "bc-wl" });
      Object.keys(PRESETS).forEach(function (k) { sel.appendChild(el("option", { value: k }, k + " (" + PRESETS[k].join(" / ") + ")")); });
      sel.addEventListener("change", function () { S.wl = PRESETS[sel.value].slice(); render(); }); fw.appendChild(sel); box.appendChild(fw);
      if (HAS) {
        const fd = el("fieldset"); fd.appendChild(el("legend", {}, F.levels_label));
        const lv = el("input", { type: "text", id: "bc-levels", size: 16, value: S.levels.join(",") });
        lv.addEventListener("change", function () { setLevels(lv.value); render(); }); fd.appendChild(lv);
        const wash = el("input", { type: "checkbox", id: "bc-wash" });
        wash.addEventListener("change", function () { S.wash = wash.checked; render(); });
        const wl = el("label"); wl.appendChild(wash); wl.appendChild(document.createTextNode(" colour wash")); fd.appendChild(wl);
        if (CMP) {
          const cc = el("input", { type: "checkbox", id: "bc-compare" }); cc.checked = true;
          cc.addEventListener("change", function () { S.compare = cc.checked; render(); });
          const cl = el("label", { style: "display:block" }); cl.appendChild(cc);
          cl.appendChild(document.createTextNode(" " + D.compare.label + " (dashed)")); fd.appendChild(cl);
        }
        box.appendChild(fd);
      }
      const fs = el("fieldset"); fs.appendChild(el("legend", {}, "Structures"));
      layers.forEach(function (L) {
        const cb = el("input", { type: "checkbox", "data-layer": L.name }); cb.checked = true;
        cb.addEventListener("change", function () { if (cb.checked) S.hidden.delete(L.name); else S.hidden.add(L.name); render(); });
        const lab = el("label", { style: "display:block" });
        lab.appendChild(cb); lab.appendChild(swatch(L.colour, L.kind === "isotherm"));
        const suffix = L.kind === "isotherm" ? " (isotherm)" : L.kind === "zone" ? " (planned zone)" : "";
        lab.appendChild(document.createTextNode(" " + L.name + suffix)); fs.appendChild(lab);
      });
      const ic = el("input", { type: "checkbox", id: "bc-instr" }); ic.checked = true;
      ic.addEventListener("change", function () { S.instruments = ic.checked; render(); });
      const il = el("label", { style: "display:block" }); il.appendChild(ic); il.appendChild(document.createTextNode(" seeds, needles, probes"));
      fs.appendChild(il);
      box.appendChild(fs);
      box.appendChild(el("div", { id: "bc-readout" }, "move the cursor over the image"));
    }
    function state() {
      const r = canvas.getBoundingClientRect();
      return {
        view: S.view, slice: S.slice[S.view], nslices: dims(S.view).n, instruments: S.instruments, levels: S.levels, wl: S.wl, wash: S.wash,
        hidden: Array.from(S.hidden), edges: S.edges, isodose_segments: S.iso, compare_segments: S.isoCompare, seeds_drawn: S.drawnSeeds,
        tracks_drawn: S.drawnTracks, readout: S.readout,
        canvas: { left: r.left + window.scrollX, top: r.top + window.scrollY, width: canvas.width, height: canvas.height },
      };
    }
    function apply(h) {
      if (VIEWS.indexOf(h.get("view")) >= 0) S.view = h.get("view");
      if (h.get("wl")) S.wl = h.get("wl").split(",").map(Number);
      if (h.get("levels") && HAS) { const lv = document.getElementById("bc-levels"); lv.value = h.get("levels"); lv.dispatchEvent(new Event("change")); }
      if (h.get("wash") === "1" && HAS) document.getElementById("bc-wash").click();
      if (h.get("instruments") === "0") document.getElementById("bc-instr").click();
      if (h.get("compare") === "0" && CMP) document.getElementById("bc-compare").click();
      h.getAll("toggle").forEach(function (t) {
        t.split(",").forEach(function (n) {
          const cb = document.querySelector('[data-layer="' + CSS.escape(n) + '"]'); if (cb && cb.checked) cb.click();
        });
      });
      render();
      if (h.get("slider") !== null) { const sl = document.getElementById("bc-slider"); sl.value = h.get("slider"); sl.dispatchEvent(new Event("input")); }
      (h.get("keys") || "").split(",").filter(Boolean).forEach(function (k) { canvas.dispatchEvent(new KeyboardEvent("keydown", { key: k })); });
      for (let n = 0; n < Math.abs(+(h.get("wheel") || 0)); n++) canvas.dispatchEvent(new WheelEvent("wheel", { deltaY: +h.get("wheel") > 0 ? 100 : -100, cancelable: true }));
      if (h.get("probe")) { // move the mouse over the point (mm, LPS), on the slice through it
        const q = toUvd(S.view, ctIjkOfMm(h.get("probe").split(",").map(Number)));
        setSlice(Math.round(q[2]));
        const r = canvas.getBoundingClientRect(), c = scr(q[0], q[1]);
        canvas.dispatchEvent(new MouseEvent("mousemove", { clientX: r.left + c[0], clientY: r.top + c[1] }));
      }
    }
    buildControls();
    return { state: state, apply: apply };
  }

  // ---- DVH (inline SVG): curves (solid or dashed) and bands (shaded between two curves) ----
  function makeDvh(H) {
    const SVGNS = "http://www.w3.org/2000/svg";
    const DV = { hidden: new Set(), hover: null };
    const PW = 600, PH = 340, ML = 50, MB = 35, MT = 10, MR = 15;
    const curves = H.curves, bands = H.bands || [];
    let xmax = 1;
    curves.concat(bands).forEach(function (c) { xmax = Math.max(xmax, c.dose[c.dose.length - 1]); });
    if (H.rx) xmax = Math.min(xmax, 3 * H.rx);
    function X(g) { return ML + (PW - ML - MR) * g / xmax; }
    function Y(p) { return MT + (PH - MT - MB) * (1 - p / 100); }
    function svgEl(tag, attrs) { const e = document.createElementNS(SVGNS, tag); Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); }); return e; }
    function interp(x, y, g) {
      if (g <= x[0]) return y[0]; if (g >= x[x.length - 1]) return y[x.length - 1];
      let lo = 0, hi = x.length - 1;
      while (hi - lo > 1) { const m = (lo + hi) >> 1; if (x[m] <= g) lo = m; else hi = m; }
      return y[lo] + (y[hi] - y[lo]) * (g - x[lo]) / (x[hi] - x[lo]);
    }
    function pts(dose, vol) {
      const p = []; for (let n = 0; n < dose.length; n++) if (dose[n] <= xmax) p.push(X(dose[n]).toFixed(1) + "," + Y(vol[n]).toFixed(1));
      return p;
    }
    const names = [];
    curves.concat(bands).forEach(function (c) { if (names.indexOf(c.name) < 0) names.push(c.name); });
    const colourOf = {};
    curves.concat(bands).forEach(function (c) { if (!colourOf[c.name]) colourOf[c.name] = c.colour; });
    const svg = svgEl("svg", { width: PW, height: PH, id: "bc-dvh-svg" });
    for (let t = 0; t <= 100; t += 20) {
      svg.appendChild(svgEl("line", { x1: ML, x2: PW - MR, y1: Y(t), y2: Y(t), stroke: "#ddd" }));
      const tx = svgEl("text", { x: ML - 5, y: Y(t) + 4, "text-anchor": "end", "font-size": 10 }); tx.textContent = t; svg.appendChild(tx);
    }
    for (let n = 0; n <= 6; n++) {
      const g = xmax * n / 6; const tx = svgEl("text", { x: X(g), y: PH - MB + 14, "text-anchor": "middle", "font-size": 10 });
      tx.textContent = g.toFixed(0); svg.appendChild(tx);
    }
    const xl = svgEl("text", { x: (ML + PW - MR) / 2, y: PH - 4, "text-anchor": "middle", "font-size": 11 }); xl.textContent = "dose (Gy)"; svg.appendChild(xl);
    const yl = svgEl("text", { x: 12, y: PH / 2, "font-size": 11, transform: "rotate(-90 12 " + PH / 2 + ")", "text-anchor": "middle" }); yl.textContent = "volume (%)"; svg.appendChild(yl);
    if (H.rx) svg.appendChild(svgEl("line", { x1: X(H.rx), x2: X(H.rx), y1: MT, y2: PH - MB, stroke: "#c00", "stroke-dasharray": "5,3", id: "bc-dvh-rx" }));
    bands.forEach(function (b) {
      const upper = pts(b.dose, b.hi), lower = pts(b.dose, b.lo).reverse();
      const poly = svgEl("polygon", { points: upper.concat(lower).join(" "), fill: "rgb(" + b.colour.join(",") + ")", "fill-opacity": 0.25, stroke: "none", "data-dvh": b.name, "data-band": b.label });
      svg.appendChild(poly);
    });
    curves.forEach(function (c) {
      const attrs = { points: pts(c.dose, c.vol).join(" "), fill: "none", stroke: "rgb(" + c.colour.join(",") + ")", "stroke-width": 2, "data-dvh": c.name, "data-label": c.label };
      if (c.dash) attrs["stroke-dasharray"] = "6,4";
      svg.appendChild(svgEl("polyline", attrs));
    });
    H.goals.forEach(function (g) {
      const m = svgEl("circle", { cx: X(Math.min(g.dose, xmax)), cy: Y(g.vol), r: 4, fill: "none", stroke: "#000", "data-goal": g.label });
      const t = svgEl("title", {}); t.textContent = g.label; m.appendChild(t); svg.appendChild(m);
    });
    const hoverLine = svgEl("line", { x1: 0, x2: 0, y1: MT, y2: PH - MB, stroke: "#444", visibility: "hidden" }); svg.appendChild(hoverLine);
    svg.addEventListener("mousemove", function (e) { const r = svg.getBoundingClientRect(); hover((e.clientX - r.left - ML) / (PW - ML - MR) * xmax); writeState(); });
    document.getElementById("bc-dvh").appendChild(svg);
    const box = document.getElementById("bc-dvh-controls");
    names.forEach(function (name) {
      const cb = el("input", { type: "checkbox", "data-dvh-toggle": name }); cb.checked = true;
      cb.addEventListener("change", function () { toggle(name, !cb.checked); });
      const lab = el("label", { style: "margin-right:1em" }); lab.appendChild(cb); lab.appendChild(swatch(colourOf[name], false));
      lab.appendChild(document.createTextNode(" " + name)); box.appendChild(lab);
    });
    function toggle(name, hide) {
      if (hide) DV.hidden.add(name); else DV.hidden.delete(name);
      svg.querySelectorAll("[data-dvh]").forEach(function (p) { p.style.display = DV.hidden.has(p.getAttribute("data-dvh")) ? "none" : ""; });
      const cb = document.querySelector('[data-dvh-toggle="' + CSS.escape(name) + '"]'); if (cb) cb.checked = !hide;
    }
    function hover(g) {
      if (!(g >= 0 && g <= xmax)) return;
      hoverLine.setAttribute("x1", X(g)); hoverLine.setAttribute("x2", X(g)); hoverLine.setAttribute("visibility", "visible");
      DV.hover = { dose_gy: +g.toFixed(3), volumes_pct: {}, bands_pct: {} };
      let text = "dose " + g.toFixed(2) + " Gy";
      curves.forEach(function (c) {
        if (DV.hidden.has(c.name)) return;
        const v = interp(c.dose, c.vol, g); DV.hover.volumes_pct[c.label] = +v.toFixed(3); text += "\n" + c.label + ": V = " + v.toFixed(1) + " %";
      });
      bands.forEach(function (b) {
        if (DV.hidden.has(b.name)) return;
        const lo = interp(b.dose, b.lo, g), hi = interp(b.dose, b.hi, g);
        DV.hover.bands_pct[b.label] = [+lo.toFixed(3), +hi.toFixed(3)]; text += "\n" + b.label + ": V = " + lo.toFixed(1) + " – " + hi.toFixed(1) + " %";
      });
      document.getElementById("bc-dvh-readout").textContent = text;
    }
    function state() {
      const shown = [];
      svg.querySelectorAll("[data-dvh]").forEach(function (p) {
        const n = p.getAttribute("data-dvh"); if (p.style.display !== "none" && shown.indexOf(n) < 0) shown.push(n);
      });
      return { dvh_hidden: Array.from(DV.hidden), dvh_hover: DV.hover, dvh_visible: shown, dvh_curves: curves.length, dvh_bands: bands.length };
    }
    function apply(h) {
      h.getAll("dvh_toggle").forEach(function (t) {
        const cb = document.querySelector('[data-dvh-toggle="' + CSS.escape(t) + '"]'); if (cb && cb.checked) cb.click();
      });
      if (h.get("dvh_hover")) {
        const r = svg.getBoundingClientRect();
        svg.dispatchEvent(new MouseEvent("mousemove", { clientX: r.left + X(+h.get("dvh_hover")), clientY: r.top + PH / 2 }));
      }
    }
    return { state: state, apply: apply };
  }

  function applyHash() {
    // steps separated by "|" are applied in turn; the state after each is recorded
    const steps = location.hash.replace(/^#/, "").split("|");
    const states = steps.map(function (step) { applyStep(step); return JSON.parse(document.getElementById("bc-state").textContent); });
    if (states.length > 1) document.getElementById("bc-state").textContent = JSON.stringify(states);
  }
  function applyStep(step) {
    // scripted actions (tests and links): each goes through the same DOM events as a user
    const h = new URLSearchParams(step);
    if (h.get("solo") === "1") document.body.classList.add("bc-solo");
    if (h.get("solo") === "2") document.body.classList.add("bc-solo", "bc-solo-controls");
    if (V) V.apply(h);
    if (G) G.apply(h);
    writeState();
  }
  const D = json("bc-data"), H = json("bc-dvh-data");
  if (D) V = makeViewer(D);
  if (H) G = makeDvh(H);
  applyHash();
  window.addEventListener("hashchange", applyHash);
})();

// Controls that send protocol messages and show what the next meta says.
// Sliders send commit:false while dragging and commit:true on release; their
// position always comes back from meta (the server is the source of truth),
// except for the one the user is holding right now.

const fmt = (v, d = 2) => (Math.abs(v) >= 1000 ? v.toFixed(0) : v.toFixed(d));

// A slider for a value in [min, max], linear or logarithmic.
export function slider(parent, { label, min, max, log = false, step = 0.001, digits = 2, unit = "", get, send }) {
  const row = document.createElement("div");
  row.className = "ctl";
  const id = `c-${Math.random().toString(36).slice(2)}`;
  row.innerHTML = `<label for="${id}"></label><input id="${id}" type="range" min="0" max="1000" step="1"><output></output>`;
  row.querySelector("label").textContent = label;
  const input = row.querySelector("input");
  const out = row.querySelector("output");
  const toPos = (v) => 1000 * (log ? Math.log(v / min) / Math.log(max / min) : (v - min) / (max - min));
  const fromPos = (p) => {
    let v = log ? min * Math.pow(max / min, p / 1000) : min + (p / 1000) * (max - min);
    v = Math.round(v / step) * step;
    return Math.min(max, Math.max(min, v));
  };
  let holding = false;
  input.addEventListener("pointerdown", () => { holding = true; });
  input.addEventListener("input", () => {
    const v = fromPos(+input.value);
    out.textContent = fmt(v, digits) + unit;
    send(v, false);
  });
  input.addEventListener("change", () => {
    holding = false;
    send(fromPos(+input.value), true);
  });
  parent.appendChild(row);
  return {
    input,
    update(meta) {
      const v = get(meta);
      if (v === undefined || v === null) return;
      if (!holding) input.value = String(Math.round(toPos(v)));
      out.textContent = fmt(v, digits) + unit;
    },
  };
}

export function checkbox(parent, { label, get, send }) {
  const row = document.createElement("div");
  row.className = "ctl check";
  const id = `c-${Math.random().toString(36).slice(2)}`;
  row.innerHTML = `<label for="${id}"></label><input id="${id}" type="checkbox">`;
  row.querySelector("label").textContent = label;
  const input = row.querySelector("input");
  input.addEventListener("change", () => send(input.checked));
  parent.appendChild(row);
  return { input, update(meta) { input.checked = !!get(meta); } };
}

export function number(parent, { label, min, max, get, send }) {
  const row = document.createElement("div");
  row.className = "ctl";
  const id = `c-${Math.random().toString(36).slice(2)}`;
  row.innerHTML = `<label for="${id}"></label><input id="${id}" type="number"><output></output>`;
  row.querySelector("label").textContent = label;
  const input = row.querySelector("input");
  input.min = min; input.max = max; input.step = 1;
  input.addEventListener("change", () => {
    const v = Math.round(+input.value);
    if (Number.isFinite(v)) send(v);
  });
  parent.appendChild(row);
  return {
    input,
    update(meta) { if (document.activeElement !== input) input.value = get(meta); },
  };
}

// Every control the protocol offers, wired to `send(message)`.
export function buildControls(send) {
  const all = [];
  const $ = (id) => document.getElementById(id);
  const fft = $("c-fft"), bands = $("c-bands"), scale = $("c-scale"), ev = $("c-events");

  all.push(checkbox(fft, { label: "FFT on", get: (m) => m.fft_enabled, send: (v) => send({ type: "set_fft", enabled: v }) }));
  all.push(checkbox(fft, { label: "raw dB", get: (m) => m.fft_send_raw_db, send: (v) => send({ type: "set_fft_send_raw_db", send_raw_db: v }) }));
  all.push(number(fft, { label: "bins", min: 8, max: 1024, get: (m) => m.n_fft_bins, send: (v) => send({ type: "set_n_fft_bins", n: v }) }));
  all.push(slider(fft, { label: "peak smear", min: 0, max: 3, step: 0.01, unit: " oct", get: (m) => m.fft_peak_smear_oct,
    send: (v, commit) => send({ type: "set_fft_peak_smear", peak_smear_oct: v, commit }) }));

  for (const b of ["low", "mid", "high"]) {
    const edge = (which) => slider(bands, {
      label: `${b} ${which}`, min: 20, max: 20000, log: true, step: 1, digits: 0, unit: " Hz",
      get: (m) => m.bands[b][`${which}_hz`],
      send: (v, commit) => {
        const e = { ...window.phase4Meta.bands[b] };
        e[`${which}_hz`] = v;
        send({ type: "set_band", band: b, lo_hz: e.lo_hz, hi_hz: e.hi_hz, commit });
      },
    });
    all.push(edge("lo"), edge("hi"));
  }

  for (const b of ["low", "mid", "high"]) {
    all.push(slider(scale, { label: `τ ${b}`, min: 0.005, max: 2, log: true, step: 0.001, digits: 3, unit: " s", get: (m) => m.tau[b],
      send: (v, commit) => send({ type: "set_smoothing", tau: { [b]: v }, commit }) }));
  }
  const as = (key, label, min, max, log, digits, unit) => slider(scale, { label, min, max, log, step: Math.pow(10, -digits), digits, unit,
    get: (m) => m.autoscale[key], send: (v, commit) => send({ type: "set_autoscale", [key]: v, commit }) });
  all.push(as("tau_attack_s", "attack", 0.001, 1, true, 3, " s"));
  all.push(as("tau_release_s", "release", 5, 300, true, 1, " s"));
  all.push(as("noise_floor", "noise floor", 0, 0.1, false, 4, ""));
  all.push(as("strength", "strength", 0, 1, false, 2, ""));

  all.push(slider(ev, { label: "snapshots", min: 15, max: 240, step: 1, digits: 0, unit: " Hz", get: (m) => m.ws_snapshot_hz,
    send: (v, commit) => send({ type: "set_ws_snapshot_hz", hz: v, commit }) }));
  all.push(checkbox(ev, { label: "onsets on", get: (m) => m.onset && m.onset.enabled, send: (v) => send({ type: "set_onset", enabled: v }) }));
  all.push(slider(ev, { label: "sensitivity", min: 0, max: 1, step: 0.01, get: (m) => m.onset && m.onset.sensitivity,
    send: (v, commit) => send({ type: "set_onset", sensitivity: v, commit }) }));
  all.push(checkbox(ev, { label: "tempo on", get: (m) => m.tempo && m.tempo.enabled, send: (v) => send({ type: "set_tempo", enabled: v }) }));

  return { update(meta) { for (const c of all) c.update(meta); } };
}

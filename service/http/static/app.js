// The PortraitSR page: sends the chosen image to POST /upscale (face crop mode) or POST /restore
// (whole photo mode), the same calls as any client, and shows the input (nearest-neighbour),
// bicubic (bicubic.js) and PortraitSR side by side; in photo mode, the faces found are outlined.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("upscale-form");
  const fileInput = $("file-input");
  const dropZone = $("drop-zone");
  const fileName = $("file-name");
  const button = $("upscale-button");
  const statusLine = $("status");
  const errorLine = $("error");
  const results = $("results");
  const inputImage = $("input-image");
  const bicubicCanvas = $("bicubic-canvas");
  const srImage = $("sr-image");
  const compare = $("compare");
  const compareBefore = $("compare-before");
  const compareAfter = $("compare-after");
  const compareDivider = $("compare-divider");
  const slider = $("compare-slider");
  const downloadLink = $("download-link");
  const boxesCanvas = $("boxes-canvas");

  const EXTENSIONS = { png: "png", jpeg: "jpg", webp: "webp" };

  class Unreachable extends Error {} // the request never got an HTTP answer

  let chosenFile = null;
  let inputUrl = null;
  let resultUrl = null;
  let inFlight = null; // AbortController of the running request
  let retryTimer = null;

  // ---------------------------------------------------------------------------------------------
  // Messages

  function showStatus(text) {
    statusLine.textContent = text;
  }

  function showError(text) {
    errorLine.textContent = text;
    errorLine.hidden = !text;
  }

  // The human-readable reason inside an error body: this API sends {"error": code, "detail": reason};
  // also read {"reason"}, {"message"} and FastAPI's default {"detail": [{"msg": ...}]}. The code in "error" is the fallback.
  function reasonOf(body) {
    if (body == null) return "";
    if (typeof body === "string") return body;
    if (Array.isArray(body)) return body.map(reasonOf).filter(Boolean).join("; ");
    if (typeof body === "object") {
      for (const key of ["detail", "reason", "message", "msg", "error"]) {
        const text = reasonOf(body[key]);
        if (text) return text;
      }
    }
    return "";
  }

  async function errorText(response) {
    let reason = "";
    const raw = await response.text();
    try {
      reason = reasonOf(JSON.parse(raw));
    } catch (_) {
      reason = raw.trim().slice(0, 300);
    }
    const why = reason ? ` ${reason}` : "";
    switch (response.status) {
      case 400:
        return `The service could not use this image (400).${why}`;
      case 413:
        return `The image is too large (413).${why}`;
      case 415:
        return `This file type is not supported (415).${why}`;
      case 429: {
        const wait = retryAfterSeconds(response);
        const when = wait != null ? `Try again in ${wait} s.` : "Try again shortly.";
        return `The service is busy (429). ${when}${why}`;
      }
      case 503:
        return `The service is not ready yet (503).${why}`;
      case 504:
        return `The service did not finish in time (504).${why} Try again in a moment.`;
      default:
        return `The service answered ${response.status} ${response.statusText}.${why}`;
    }
  }

  // Retry-After is either seconds or an HTTP date.
  function retryAfterSeconds(response) {
    const header = response.headers.get("Retry-After");
    if (!header) return null;
    const seconds = Number(header);
    if (Number.isFinite(seconds)) return Math.max(0, Math.ceil(seconds));
    const date = Date.parse(header);
    return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
  }

  // After a 429 the button stays disabled until Retry-After has passed.
  function holdUntilRetry(seconds) {
    clearInterval(retryTimer);
    let left = seconds;
    button.disabled = true;
    button.textContent = `Wait ${left} s`;
    retryTimer = setInterval(() => {
      left -= 1;
      if (left > 0) {
        button.textContent = `Wait ${left} s`;
        return;
      }
      clearInterval(retryTimer);
      retryTimer = null;
      button.textContent = "Upscale";
      button.disabled = !chosenFile;
    }, 1000);
  }

  // ---------------------------------------------------------------------------------------------
  // Choosing a file

  function chooseFile(file) {
    chosenFile = file || null;
    showError("");
    showStatus("");
    fileName.textContent = chosenFile ? `Selected: ${chosenFile.name} (${formatBytes(chosenFile.size)})` : "";
    button.disabled = !chosenFile || retryTimer !== null;
  }

  function formatBytes(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  }

  fileInput.addEventListener("change", () => chooseFile(fileInput.files[0]));

  for (const type of ["dragenter", "dragover"]) {
    dropZone.addEventListener(type, (event) => {
      event.preventDefault();
      dropZone.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    dropZone.addEventListener(type, () => dropZone.classList.remove("dragging"));
  }
  dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) chooseFile(file);
  });

  // ---------------------------------------------------------------------------------------------
  // Upscaling

  function selectedScale() {
    return Number(form.querySelector('input[name="scale"]:checked').value);
  }

  function selectedMode() {
    return form.querySelector('input[name="mode"]:checked').value;
  }

  // X-Face-Boxes of /restore: [{"box": [x1, y1, x2, y2], "score": s, "status": "restored" | ...}] in input pixels.
  function faceBoxes(response) {
    try {
      const boxes = JSON.parse(response.headers.get("X-Face-Boxes") || "[]");
      return Array.isArray(boxes) ? boxes : [];
    } catch (_) {
      return [];
    }
  }

  function drawBoxes(boxes, scale, outW, outH) {
    boxesCanvas.hidden = boxes === null;
    if (boxes === null) return;
    boxesCanvas.width = outW;
    boxesCanvas.height = outH;
    const context = boxesCanvas.getContext("2d");
    context.lineWidth = Math.max(2, Math.round(outW / 400));
    for (const face of boxes) {
      const [x1, y1, x2, y2] = face.box.map((value) => value * scale);
      context.strokeStyle = face.status === "restored" ? "#22c55e" : "#f59e0b";
      context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    }
  }

  // API keys: when the service answers 401, ask for a key once and keep it for this tab only.
  const API_KEY_ITEM = "portraitsr-api-key";

  function authorizationHeaders() {
    const key = sessionStorage.getItem(API_KEY_ITEM);
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  function askForApiKey() {
    const key = window.prompt("This service needs an API key. Key:");
    if (!key || !key.trim()) return false;
    sessionStorage.setItem(API_KEY_ITEM, key.trim());
    return true;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!chosenFile) return;
    if (inFlight) inFlight.abort();
    const controller = new AbortController();
    inFlight = controller;

    const file = chosenFile;
    const scale = selectedScale();
    const mode = selectedMode();
    const format = $("format-select").value;
    const model = form.querySelector('input[name="model"]:checked').value;
    showError("");
    showStatus(mode === "photo" ? `Restoring the faces of ${file.name} ×${scale}…` : `Upscaling ${file.name} ×${scale}…`);
    button.disabled = true;
    results.setAttribute("aria-busy", "true");

    const body = new FormData();
    body.append("image", file, file.name);
    const started = performance.now();
    try {
      let response;
      try {
        const endpoint = mode === "photo" ? "restore" : "upscale";
        response = await fetch(`${endpoint}?scale=${scale}&format=${format}&model=${model}`, {
          method: "POST",
          body,
          headers: authorizationHeaders(),
          signal: controller.signal,
        });
      } catch (error) {
        throw error.name === "AbortError" ? error : new Unreachable(`Could not reach the service: ${error.message}`);
      }
      if (response.status === 401 && askForApiKey()) {
        inFlight = null;
        queueMicrotask(() => form.requestSubmit());  // again, with the key
        return;
      }
      if (!response.ok) {
        showStatus("");
        showError(await errorText(response));
        if (response.status === 429) holdUntilRetry(retryAfterSeconds(response) ?? 1);
        return;
      }
      const blob = await response.blob();
      const seconds = (performance.now() - started) / 1000;
      const boxes = mode === "photo" ? faceBoxes(response) : null;
      // X-Model: the manifest name of the model that ran (absent from /restore when no face was restored).
      await showResult(file, blob, scale, format, seconds, boxes, response.headers.get("X-Model"));
    } catch (error) {
      if (error.name === "AbortError") return;
      showStatus("");
      showError(error instanceof Unreachable ? error.message : `Could not show the result: ${error.message}`);
    } finally {
      if (inFlight === controller) {
        inFlight = null;
        results.removeAttribute("aria-busy");
        if (retryTimer === null) button.disabled = !chosenFile;
      }
    }
  });

  async function showResult(file, blob, scale, format, seconds, boxes, modelName) {
    if (resultUrl) URL.revokeObjectURL(resultUrl);
    if (inputUrl) URL.revokeObjectURL(inputUrl);
    resultUrl = URL.createObjectURL(blob);
    inputUrl = URL.createObjectURL(file);

    srImage.src = resultUrl;
    compareAfter.src = resultUrl;
    await srImage.decode();
    const outW = srImage.naturalWidth;
    const outH = srImage.naturalHeight;
    results.style.setProperty("--aspect", `${outW} / ${outH}`);
    $("sr-size").textContent = `${outW}×${outH}`;
    $("sr-model").textContent = modelName ? `(${modelName})` : "";
    drawBoxes(boxes, scale, outW, outH);

    // The input and its bicubic enlargement, if this browser can decode the input's format.
    let input = null;
    try {
      input = await createImageBitmap(file);
    } catch (_) {
      input = null;
    }
    results.hidden = false;
    if (input) {
      inputImage.src = inputUrl;
      $("input-size").textContent = `${input.width}×${input.height}`;
      showStatus(`Computing bicubic ${outW}×${outH} for comparison…`);
      await nextFrame();
      drawBicubic(input, outW, outH);
      $("bicubic-size").textContent = `${outW}×${outH}`;
    } else {
      inputImage.removeAttribute("src");
      $("input-size").textContent = "(this browser cannot show this format)";
      clearCanvas(bicubicCanvas);
      clearCanvas(compareBefore);
      $("bicubic-size").textContent = "";
    }

    const stem = file.name.replace(/\.[^.]*$/, "") || "image";
    downloadLink.href = resultUrl;
    downloadLink.download = `${stem}_x${scale}.${EXTENSIONS[format] || format}`;
    downloadLink.textContent = `Download ${downloadLink.download} (${formatBytes(blob.size)})`;

    const inSize = input ? `${input.width}×${input.height} → ` : "";
    const restored = boxes ? boxes.filter((face) => face.status === "restored").length : 0;
    const faces = boxes ? ` Faces: ${boxes.length} found, ${restored} restored (outlined green).` : "";
    const ran = modelName ? ` Model: ${modelName}.` : "";
    showStatus(`Done: ${file.name}, ${inSize}${outW}×${outH} (×${scale}, ${format.toUpperCase()}) in ${seconds.toFixed(2)} s.${ran}${faces}`);
    updatePixelation();
    results.scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  function nextFrame() {
    return new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  }

  function drawBicubic(bitmap, outW, outH) {
    const source = document.createElement("canvas");
    source.width = bitmap.width;
    source.height = bitmap.height;
    const context = source.getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    const pixels = context.getImageData(0, 0, bitmap.width, bitmap.height);
    const enlarged = window.PortraitSRBicubic.resize(pixels, outW, outH);
    for (const canvas of [bicubicCanvas, compareBefore]) {
      canvas.width = outW;
      canvas.height = outH;
      canvas.getContext("2d").putImageData(enlarged, 0, 0);
    }
  }

  function clearCanvas(canvas) {
    canvas.width = 1;
    canvas.height = 1;
  }

  // Where the page shows an image larger than its pixels, show the pixels (no extra smoothing by
  // the browser on top of bicubic or PortraitSR); where it shrinks it, let the browser filter.
  function updatePixelation() {
    for (const element of [bicubicCanvas, srImage, compareBefore, compareAfter]) {
      const natural = element.naturalWidth || element.width;
      element.classList.toggle("pixelated", natural > 0 && element.clientWidth >= natural);
    }
  }
  window.addEventListener("resize", updatePixelation);

  // ---------------------------------------------------------------------------------------------
  // Before/after slider: bicubic left of the split, PortraitSR right of it.

  function setSplit(percent) {
    const p = Math.min(100, Math.max(0, percent));
    compareAfter.style.clipPath = `inset(0 0 0 ${p}%)`;
    compareDivider.style.left = `${p}%`;
  }
  slider.addEventListener("input", () => setSplit(Number(slider.value)));

  function splitFromPointer(event) {
    const box = compare.getBoundingClientRect();
    slider.value = String(Math.round(((event.clientX - box.left) / box.width) * 100));
    setSplit(Number(slider.value));
  }
  compare.addEventListener("pointerdown", (event) => {
    compare.setPointerCapture(event.pointerId);
    splitFromPointer(event);
  });
  compare.addEventListener("pointermove", (event) => {
    if (compare.hasPointerCapture(event.pointerId)) splitFromPointer(event);
  });
  setSplit(Number(slider.value));
})();

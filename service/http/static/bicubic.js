// Bicubic upscaling computed in the page, the same way Pillow's Image.resize(..., BICUBIC) does it
// (Keys kernel a = -0.5, separable, horizontal pass first, 8-bit fixed point with 22 fraction bits,
// edge taps dropped and the remaining weights renormalised). The evaluation protocol's baseline is
// Pillow's bicubic, so the page shows that baseline rather than the browser's own smoothing, whose
// filter is unspecified.
"use strict";

(function () {
  const PRECISION_BITS = 32 - 8 - 2;
  const ONE = 2 ** PRECISION_BITS;
  const HALF = 2 ** (PRECISION_BITS - 1);
  const SUPPORT = 2.0;

  function cubic(x) {
    const a = -0.5;
    if (x < 0) x = -x;
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
  }

  // For each output index: the first input index and integer weights (Pillow's precompute_coeffs
  // followed by normalize_coeffs_8bpc).
  function coefficients(inSize, outSize) {
    const scale = inSize / outSize;
    const filterScale = Math.max(scale, 1);
    const support = SUPPORT * filterScale;
    const first = new Int32Array(outSize);
    const weights = [];
    for (let xx = 0; xx < outSize; xx++) {
      const center = (xx + 0.5) * scale;
      const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
      const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
      const k = new Float64Array(xmax);
      let total = 0;
      for (let x = 0; x < xmax; x++) {
        const w = cubic((x + xmin - center + 0.5) / filterScale);
        k[x] = w;
        total += w;
      }
      const fixed = new Float64Array(xmax);
      for (let x = 0; x < xmax; x++) {
        const w = total !== 0 ? k[x] / total : k[x];
        fixed[x] = w < 0 ? Math.trunc(-0.5 + w * ONE) : Math.trunc(0.5 + w * ONE);
      }
      first[xx] = xmin;
      weights.push(fixed);
    }
    return { first, weights };
  }

  function clip8(sum) {
    const value = Math.floor(sum / ONE);
    return value < 0 ? 0 : value > 255 ? 255 : value;
  }

  // src: Uint8ClampedArray RGBA (w*h*4) -> Uint8ClampedArray RGBA (outW*outH*4)
  function resampleRGBA(src, w, h, outW, outH) {
    const horizontal = coefficients(w, outW);
    const temp = new Uint8ClampedArray(outW * h * 4);
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < outW; xx++) {
        const k = horizontal.weights[xx];
        const x0 = horizontal.first[xx];
        for (let c = 0; c < 4; c++) {
          let sum = HALF;
          for (let x = 0; x < k.length; x++) sum += src[(y * w + x0 + x) * 4 + c] * k[x];
          temp[(y * outW + xx) * 4 + c] = clip8(sum);
        }
      }
    }
    const vertical = coefficients(h, outH);
    const out = new Uint8ClampedArray(outW * outH * 4);
    for (let yy = 0; yy < outH; yy++) {
      const k = vertical.weights[yy];
      const y0 = vertical.first[yy];
      for (let xx = 0; xx < outW; xx++) {
        for (let c = 0; c < 4; c++) {
          let sum = HALF;
          for (let y = 0; y < k.length; y++) sum += temp[((y0 + y) * outW + xx) * 4 + c] * k[y];
          out[(yy * outW + xx) * 4 + c] = clip8(sum);
        }
      }
    }
    return out;
  }

  function isOpaque(data) {
    for (let i = 3; i < data.length; i += 4) if (data[i] !== 255) return false;
    return true;
  }

  // Pillow resizes images with alpha premultiplied (RGBa), so colours of transparent pixels do
  // not bleed into their neighbours.
  function premultiply(data) {
    const out = new Uint8ClampedArray(data.length);
    for (let i = 0; i < data.length; i += 4) {
      const a = data[i + 3];
      for (let c = 0; c < 3; c++) {
        const t = data[i + c] * a + 128;
        out[i + c] = (t + (t >> 8)) >> 8;
      }
      out[i + 3] = a;
    }
    return out;
  }

  function unpremultiply(data) {
    for (let i = 0; i < data.length; i += 4) {
      const a = data[i + 3];
      for (let c = 0; c < 3; c++) data[i + c] = a === 0 ? 0 : Math.min(255, Math.trunc((255 * data[i + c]) / a));
    }
    return data;
  }

  // imageData: ImageData of the input; returns a new ImageData of outW x outH.
  function resize(imageData, outW, outH) {
    const { data, width, height } = imageData;
    const opaque = isOpaque(data);
    const source = opaque ? data : premultiply(data);
    let out = resampleRGBA(source, width, height, outW, outH);
    if (!opaque) out = unpremultiply(out);
    return new ImageData(out, outW, outH);
  }

  window.PortraitSRBicubic = { resize };
})();

import { OnnxGraph, intAttribute, readIntsAttribute, type OnnxNode } from './onnx.js';

/**
 * Rewrites PReLU networks (the three MTCNN nets) into equivalent graphs that onnxruntime's CPU
 * kernels run much faster. onnxruntime has no fused or blocked-layout PRelu: each one converts the
 * feature map out of the NCHWc layout its convolutions use, runs a slow broadcasting kernel and
 * converts back, and on the first layer of a 1080p pyramid that is half of P-Net's time. Every
 * rule below is exact algebra; only float rounding differs (outputs agree to ~1e-6).
 *
 * 1. Conv A -> PRelu(a) -> MaxPool -> Conv B: per channel, PRelu with a >= 0 is monotone, so it
 *    commutes with the max; with a < 0 it is max(y, a*y), and the pool of that is
 *    max(P(y), |a|*P(-y)). Conv A also emits -y for the negative-slope channels (padded with zero
 *    channels to a multiple of 16, the blocked layout's width), the pool runs first, and on the
 *    pooled map (a quarter of the pixels) out = alpha * relu(M1 z) + M2 z, which Conv B absorbs:
 *    B(out) = B_u(relu(M1 z)) + B_z(z), two convolutions and an add that onnxruntime fuses.
 *    Used when the -y channels fit in the last block's padding (P-Net's first layer: 10 + 6).
 * 2. Softmax over the two channels of a Conv's output -> Sigmoid of the logit difference,
 *    computed by the Conv itself (softmax along channels costs two transposes in onnxruntime).
 * 3. Any other PRelu(a) on a feature map: y + (1 - a) * relu(-y), as two 1x1 depthwise
 *    convolutions (with the relu fused) and an add, all of which stay in the blocked layout.
 */

export interface RewriteReport {
  poolSwaps: number;
  softmaxToSigmoid: number;
  depthwiseSplits: number;
}

const BLOCK = 16;
const padToBlock = (n: number) => Math.ceil(n / BLOCK) * BLOCK;

function attr(node: OnnxNode, name: string): number[] | undefined {
  return readIntsAttribute(node, name);
}

/** Per-channel slope of a PRelu over NCHW feature maps ([C, 1, 1] or [1, C, 1, 1]), or undefined. */
function channelSlope(g: OnnxGraph, prelu: OnnxNode): Float32Array | undefined {
  const slope = g.floats(prelu.inputs[1]);
  if (!slope) return undefined;
  const d = slope.dims;
  const ok = (d.length === 3 && d[1] === 1 && d[2] === 1) || (d.length === 4 && d[0] === 1 && d[2] === 1 && d[3] === 1);
  return ok ? slope.data : undefined;
}

/** A plain (group 1) Conv with float weights, and its bias (zeros when it has none). */
function convWeights(g: OnnxGraph, conv: OnnxNode | undefined) {
  if (!conv || conv.opType !== 'Conv') return undefined;
  const group = attr(conv, 'group');
  if (group && group[0] !== 1) return undefined;
  const w = g.floats(conv.inputs[1]);
  if (!w || w.dims.length !== 4) return undefined;
  const bias = conv.inputs[2] ? g.floats(conv.inputs[2])?.data : new Float32Array(w.dims[0]);
  if (!bias || bias.length !== w.dims[0]) return undefined;
  return { w: w.data, dims: w.dims, bias };
}

function swapPoolAndPrelu(g: OnnxGraph, prelu: OnnxNode): boolean {
  const a = channelSlope(g, prelu);
  const convA = g.producer(prelu.inputs[0]);
  const A = convWeights(g, convA);
  const pools = g.consumers(prelu.outputs[0]);
  if (!a || !convA || !A || g.consumers(convA.outputs[0]).length !== 1 || pools.length !== 1) return false;
  const pool = pools[0];
  if (pool.opType !== 'MaxPool' || pool.outputs.length !== 1) return false;
  const convBs = g.consumers(pool.outputs[0]);
  const convB = convBs[0];
  const B = convWeights(g, convB);
  if (convBs.length !== 1 || !B) return false;
  const C = a.length;
  if (A.dims[0] !== C || B.dims[1] !== C) return false;

  const neg: number[] = [];
  for (let c = 0; c < C; c++) if (a[c] < 0) neg.push(c);
  const Z = padToBlock(C + neg.length); // z = pool([y, -y of the negative-slope channels, zeros])
  // Only when the -y channels fit in the padding of the last block: an extra block of 16
  // channels at full resolution costs more than rule 3 (measured on R-Net and O-Net: 1.4-1.6x).
  if (Z > padToBlock(C)) return false;
  const U = padToBlock(C); // u = relu(M1 z)
  const perA = A.w.length / C;
  const wA = new Float32Array(Z * perA);
  const bA = new Float32Array(Z);
  wA.set(A.w);
  bA.set(A.bias);
  neg.forEach((c, j) => {
    for (let i = 0; i < perA; i++) wA[(C + j) * perA + i] = -A.w[c * perA + i];
    bA[C + j] = -A.bias[c];
  });
  // M1: u_c = relu(P_c) when a_c >= 0, relu(P_c - |a_c| Q_c) when a_c < 0 (Q = pooled -y).
  const m1 = new Float32Array(U * Z);
  for (let c = 0; c < C; c++) m1[c * Z + c] = 1;
  neg.forEach((c, j) => (m1[c * Z + C + j] = a[c]));
  // out_c = alpha_c u_c + L2_c(z): alpha = 1 - a, L2 = a P_c when a >= 0; alpha = 1, L2 = |a| Q_c when a < 0.
  const [O, , kh, kw] = B.dims;
  const kk = kh * kw;
  const wU = new Float32Array(O * U * kk);
  const wZ = new Float32Array(O * Z * kk);
  for (let o = 0; o < O; o++) {
    for (let c = 0; c < C; c++) {
      const j = neg.indexOf(c);
      for (let t = 0; t < kk; t++) {
        const w = B.w[(o * C + c) * kk + t];
        if (j >= 0) {
          wU[(o * U + c) * kk + t] = w;
          wZ[(o * Z + C + j) * kk + t] = -a[c] * w;
        } else {
          wU[(o * U + c) * kk + t] = (1 - a[c]) * w;
          wZ[(o * Z + c) * kk + t] = a[c] * w;
        }
      }
    }
  }
  convA.inputs = [convA.inputs[0], g.addFloats('prelu_pool_wa', wA, [Z, ...A.dims.slice(1)]), g.addFloats('prelu_pool_ba', bA, [Z])];
  pool.inputs = [convA.outputs[0]];
  const z = pool.outputs[0];
  const u0 = g.fresh('prelu_pool_m1');
  const u = g.fresh('prelu_pool_u');
  const bu = g.fresh('prelu_pool_bu');
  const bz = g.fresh('prelu_pool_bz');
  const bAttrs = convB.attributes;
  g.replace(
    convB,
    g.node('Conv', [z, g.addFloats('prelu_pool_m1w', m1, [U, Z, 1, 1])], [u0]),
    g.node('Relu', [u0], [u]),
    g.node('Conv', [z, g.addFloats('prelu_pool_wz', wZ, [O, Z, kh, kw]), g.addFloats('prelu_pool_bb', B.bias, [O])], [bz], bAttrs),
    g.node('Conv', [u, g.addFloats('prelu_pool_wu', wU, [O, U, kh, kw])], [bu], bAttrs),
    g.node('Add', [bu, bz], [convB.outputs[0]]),
  );
  g.replace(prelu);
  return true;
}

function softmaxToSigmoid(g: OnnxGraph, softmax: OnnxNode): boolean {
  if (attr(softmax, 'axis')?.[0] !== 1) return false;
  const conv = g.producer(softmax.inputs[0]);
  const W = convWeights(g, conv);
  if (!conv || !W || W.dims[0] !== 2 || g.consumers(conv.outputs[0]).length !== 1) return false;
  const per = W.w.length / 2;
  const w = new Float32Array(W.w.length);
  for (let i = 0; i < per; i++) {
    w[i] = W.w[i] - W.w[per + i];
    w[per + i] = W.w[per + i] - W.w[i];
  }
  const b = Float32Array.from([W.bias[0] - W.bias[1], W.bias[1] - W.bias[0]]);
  conv.inputs = [conv.inputs[0], g.addFloats('softmax_diff_w', w, W.dims), g.addFloats('softmax_diff_b', b, [2])];
  g.replace(softmax, g.node('Sigmoid', softmax.inputs, softmax.outputs));
  return true;
}

function depthwiseSplit(g: OnnxGraph, prelu: OnnxNode): boolean {
  const a = channelSlope(g, prelu);
  if (!a) return false;
  const C = a.length;
  const group = [intAttribute('group', C)];
  const x = prelu.inputs[0];
  const neg = g.fresh('prelu_dw_neg');
  const relu = g.fresh('prelu_dw_relu');
  const scaled = g.fresh('prelu_dw_scaled');
  g.replace(
    prelu,
    g.node('Conv', [x, g.addFloats('prelu_dw_minus', new Float32Array(C).fill(-1), [C, 1, 1, 1])], [neg], group),
    g.node('Relu', [neg], [relu]),
    g.node('Conv', [relu, g.addFloats('prelu_dw_slope', Float32Array.from(a, (s) => 1 - s), [C, 1, 1, 1])], [scaled], group),
    g.node('Add', [scaled, x], prelu.outputs),
  );
  return true;
}

/** Applies the rules; returns the model unchanged (same bytes) when none applies. */
export function rewritePrelu(model: Uint8Array): { model: Uint8Array; report: RewriteReport } {
  const g = OnnxGraph.parse(model);
  const report: RewriteReport = { poolSwaps: 0, softmaxToSigmoid: 0, depthwiseSplits: 0 };
  // Last layers first: rewriting a later pool changes the producer convolution's outputs, which
  // the earlier rule then still sees as a plain Conv it can absorb into.
  for (const node of [...g.nodes].reverse()) if (node.opType === 'PRelu' && swapPoolAndPrelu(g, node)) report.poolSwaps++;
  for (const node of [...g.nodes]) if (node.opType === 'Softmax' && softmaxToSigmoid(g, node)) report.softmaxToSigmoid++;
  for (const node of [...g.nodes]) if (node.opType === 'PRelu' && depthwiseSplit(g, node)) report.depthwiseSplits++;
  const changed = report.poolSwaps + report.softmaxToSigmoid + report.depthwiseSplits > 0;
  return { model: changed ? g.encode() : model, report };
}

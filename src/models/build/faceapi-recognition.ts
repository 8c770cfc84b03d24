import { createRequire } from 'node:module';
import path from 'node:path';
import { FacestreamError } from '../../errors.js';
import { OnnxModelBuilder } from '../graph/builder.js';
import { readTfjsWeights, type WeightTensor } from './tfjs-weights.js';

/**
 * The face-api.js face recognition network (a port of dlib's `dlib_face_recognition_resnet_model_v1`,
 * a ResNet-34-style network with 29 conv layers giving a 128-d face descriptor) as an ONNX graph,
 * built from the TensorFlow.js weights shipped in the npm package `@vladmandic/face-api` (MIT).
 *
 * The architecture follows face-api's `FaceRecognitionNet.forwardInput` (src/faceRecognitionNet/):
 * - every conv layer is conv + bias, then dlib's affine "scale" layer (x * weights + biases),
 *   optionally ReLU; here the scale is folded into the conv's weights and bias (exact algebra);
 * - `conv32_down`: 7x7 conv, stride 2, no padding, ReLU; max pool 3x3 stride 2, no padding;
 * - residual blocks: 3x3 conv (same) + ReLU, 3x3 conv (same), + input, ReLU;
 * - down-sampling blocks: 3x3 conv stride 2 (no padding) + ReLU, 3x3 conv (same); the shortcut is
 *   a 2x2 stride 2 average pool of the input, zero-padded to the block's channels; where the conv
 *   path comes out one pixel smaller than the pool (odd sizes), it is zero-padded at the bottom
 *   and right, as face-api concatenates zeros;
 * - global average pool, then a 256 x 128 fully connected layer (no bias).
 * Input: float32 NCHW [batch, 3, 150, 150], RGB, already normalised (the manifest's preprocessing);
 * output `descriptor` [batch, 128].
 */

export const FACEAPI_PACKAGE = '@vladmandic/face-api';
const INPUT_SIZE = 150;

/** Where the installed package is (its weights are under model/). */
export function faceapiPackage(): { dir: string } {
  const require = createRequire(import.meta.url);
  let pkgFile: string;
  try {
    pkgFile = require.resolve(`${FACEAPI_PACKAGE}/package.json`);
  } catch {
    throw new FacestreamError('MODEL_FETCH_FAILED', `the npm package ${FACEAPI_PACKAGE} is not installed; run \`npm install\` (it is a dependency of facestream)`);
  }
  return { dir: path.dirname(pkgFile) };
}

interface Shape {
  channels: number;
  size: number;
}

/** Output size of a convolution or pool without padding (floor, as tfjs's 'valid' and ONNX's default). */
const valid = (size: number, kernel: number, stride: number) => Math.floor((size - kernel) / stride) + 1;

class Network {
  constructor(
    private readonly b: OnnxModelBuilder,
    private readonly weights: Map<string, WeightTensor>,
  ) {}

  private weight(name: string, rank: number): WeightTensor {
    const w = this.weights.get(name);
    if (!w || w.shape.length !== rank) throw new FacestreamError('MODEL_FETCH_FAILED', `face recognition weights: ${name} is missing or not of rank ${rank}`);
    return w;
  }

  /** conv + bias + scale layer, folded into one ONNX Conv (weights [out, in, kh, kw]). */
  conv(x: string, prefix: string, stride: number, pad: number, relu: boolean): string {
    const filters = this.weight(`${prefix}/conv/filters`, 4);
    const bias = this.weight(`${prefix}/conv/bias`, 1).data;
    const scale = this.weight(`${prefix}/scale/weights`, 1).data;
    const shift = this.weight(`${prefix}/scale/biases`, 1).data;
    const [kh, kw, cin, cout] = filters.shape;
    const w = new Float32Array(cout * cin * kh * kw);
    for (let y = 0; y < kh; y++)
      for (let xk = 0; xk < kw; xk++)
        for (let i = 0; i < cin; i++)
          for (let o = 0; o < cout; o++) w[((o * cin + i) * kh + y) * kw + xk] = filters.data[((y * kw + xk) * cin + i) * cout + o] * scale[o];
    const bFolded = Float32Array.from(bias, (v, o) => v * scale[o] + shift[o]);
    const [out] = this.b.node(
      'Conv',
      [x, this.b.floats(`${prefix}/W`, w, [cout, cin, kh, kw]), this.b.floats(`${prefix}/B`, bFolded, [cout])],
      { kernel_shape: [kh, kw], strides: [stride, stride], pads: [pad, pad, pad, pad] },
    );
    return relu ? this.b.node('Relu', [out])[0] : out;
  }

  residual(x: string, prefix: string): string {
    const a = this.conv(x, `${prefix}/conv1`, 1, 1, true);
    const c = this.conv(a, `${prefix}/conv2`, 1, 1, false);
    return this.b.node('Relu', this.b.node('Add', [c, x]))[0];
  }

  residualDown(x: string, prefix: string, shape: Shape): { out: string; shape: Shape } {
    const a = this.conv(x, `${prefix}/conv1`, 2, 0, true);
    let c = this.conv(a, `${prefix}/conv2`, 1, 1, false);
    const channels = this.weight(`${prefix}/conv2/conv/filters`, 4).shape[3];
    const convSize = valid(shape.size, 3, 2);
    const poolSize = valid(shape.size, 2, 2);
    let pooled = this.b.node('AveragePool', [x], { kernel_shape: [2, 2], strides: [2, 2] })[0];
    if (channels !== shape.channels) pooled = this.pad(pooled, [0, channels - shape.channels, 0, 0], prefix);
    if (convSize !== poolSize) c = this.pad(c, [0, 0, poolSize - convSize, poolSize - convSize], prefix);
    return { out: this.b.node('Relu', this.b.node('Add', [pooled, c]))[0], shape: { channels, size: poolSize } };
  }

  /** Zero padding at the end of the channel, height and width axes of an NCHW tensor. */
  private pad(x: string, [, c, h, w]: number[], prefix: string): string {
    return this.b.node('Pad', [x, this.b.int64s(`${prefix}/pads`, [0, 0, 0, 0, 0, c, h, w])])[0];
  }
}

/**
 * Builds the ONNX model from the installed package's `model/face_recognition_model*` files.
 * Deterministic: the same weights give the same bytes.
 */
export function buildFaceapiRecognition(): Uint8Array {
  const pkg = faceapiPackage();
  const weights = readTfjsWeights(path.join(pkg.dir, 'model', 'face_recognition_model-weights_manifest.json'));
  const b = new OnnxModelBuilder('faceapi_recognition');
  const net = new Network(b, weights);
  const input = b.input('input', ['batch', 3, INPUT_SIZE, INPUT_SIZE]);
  let x = net.conv(input, 'conv32_down', 2, 0, true);
  x = b.node('MaxPool', [x], { kernel_shape: [3, 3], strides: [2, 2] })[0];
  let shape: Shape = { channels: 32, size: valid(valid(INPUT_SIZE, 7, 2), 3, 2) };
  const stages: [string, string[]][] = [
    ['conv32', ['conv32_1', 'conv32_2', 'conv32_3']],
    ['conv64_down', ['conv64_1', 'conv64_2', 'conv64_3']],
    ['conv128_down', ['conv128_1', 'conv128_2']],
    ['conv256_down', ['conv256_1', 'conv256_2']],
    ['conv256_down_out', []],
  ];
  for (const [down, blocks] of stages) {
    if (down !== 'conv32') ({ out: x, shape } = net.residualDown(x, down, shape));
    for (const block of blocks) x = net.residual(x, block);
  }
  const pooled = b.node('Flatten', b.node('GlobalAveragePool', [x]), { axis: 1 })[0];
  const fc = weights.get('fc');
  if (!fc || fc.shape.length !== 2 || fc.shape[0] !== shape.channels) throw new FacestreamError('MODEL_FETCH_FAILED', 'face recognition weights: fc is missing or of the wrong shape');
  b.node('MatMul', [pooled, b.floats('fc', fc.data, fc.shape)], {}, ['descriptor']);
  b.output('descriptor', ['batch', fc.shape[1]]);
  return b.encode({
    producer: 'facestream',
    producerVersion: '1',
    // No package version here: a release with the same weights must give the same file (sha256).
    doc: `face-api.js face recognition net (dlib ResNet-34 port, 128-d), weights from ${FACEAPI_PACKAGE} model/face_recognition_model.bin`,
  });
}

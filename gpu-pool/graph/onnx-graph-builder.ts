/**
 * A small typed helper to assemble an ONNX graph node by node and serialise
 * it with onnx-proto's protobufjs classes. Only what the model graph needs.
 */
import { writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as OnnxProto from 'onnx-proto';

// onnx-proto is CommonJS with `module.exports = $root`; Node's ESM loader cannot see its named export.
const { onnx } = createRequire(import.meta.url)('onnx-proto') as typeof OnnxProto;
type Onnx = typeof OnnxProto.onnx;
type IAttributeProto = OnnxProto.onnx.IAttributeProto;

export const OPSET = 17;
export type ElemType = 'float' | 'int64';
export type Dim = number | string;
export type AttrValue = number | number[] | string | { float: number } | { ints: number[] };

const ELEM: Record<ElemType, number> = { float: 1, int64: 7 };

/**
 * Where large initializers go instead of the protobuf (which cannot exceed
 * 2 GiB): appended to an open file, referenced by `location` relative to the
 * .onnx file. Offsets are page-aligned so onnxruntime can map them.
 */
export interface ExternalDataSink {
  fd: number;
  location: string;
  /** Tensors smaller than this stay inline. */
  minBytes: number;
}

const EXTERNAL_ALIGN = 4096;

export class OnnxGraphBuilder {
  private externalOffset = 0;
  private readonly nodes: OnnxProto.onnx.INodeProto[] = [];
  private readonly initializers: OnnxProto.onnx.ITensorProto[] = [];
  private readonly inputs: OnnxProto.onnx.IValueInfoProto[] = [];
  private readonly outputs: OnnxProto.onnx.IValueInfoProto[] = [];
  private counter = 0;

  constructor(private readonly external: ExternalDataSink | null = null) {}

  input(name: string, elem: ElemType, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, elem, dims));
    return name;
  }

  output(name: string, elem: ElemType, dims: Dim[]): void {
    this.outputs.push(valueInfo(name, elem, dims));
  }

  /** A float32 constant tensor (weights). */
  floats(name: string, dims: number[], data: Float32Array): string {
    if (this.external && data.byteLength >= this.external.minBytes) {
      const { fd, location } = this.external;
      const pad = (EXTERNAL_ALIGN - (this.externalOffset % EXTERNAL_ALIGN)) % EXTERNAL_ALIGN;
      if (pad) writeSync(fd, new Uint8Array(pad));
      const offset = this.externalOffset + pad;
      writeSync(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      this.externalOffset = offset + data.byteLength;
      this.initializers.push({
        name, dataType: ELEM.float, dims,
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: location },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(data.byteLength) },
        ],
      });
      return name;
    }
    const bytes = new Uint8Array(data.byteLength);
    bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    this.initializers.push({ name, dataType: ELEM.float, dims, rawData: bytes });
    return name;
  }

  /** An int64 constant tensor (shapes, axes, indices). */
  ints(name: string, values: number[], dims: number[] = [values.length]): string {
    const bytes = new Uint8Array(values.length * 8);
    const view = new DataView(bytes.buffer);
    values.forEach((v, i) => view.setBigInt64(i * 8, BigInt(v), true));
    this.initializers.push({ name, dataType: ELEM.int64, dims, rawData: bytes });
    return name;
  }

  /** Adds one node; returns its output names (generated unless given). */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outputs: number | string[] = 1): string[] {
    const outNames = typeof outputs === 'number'
      ? Array.from({ length: outputs }, () => `${opType.toLowerCase()}_${this.counter++}`)
      : outputs;
    const attribute: IAttributeProto[] = Object.entries(attrs).map(([name, v]) => attribute_(onnx, name, v));
    this.nodes.push({ opType, input: inputs, output: outNames, attribute, name: `${opType}_${this.counter++}` });
    return outNames;
  }

  /** Single-output node. */
  op1(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, output?: string): string {
    return this.op(opType, inputs, attrs, output ? [output] : 1)[0];
  }

  serialize(graphName: string, docString: string): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'sssd-serve',
      docString,
      opsetImport: [{ domain: '', version: OPSET }],
      graph: {
        name: graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function valueInfo(name: string, elem: ElemType, dims: Dim[]): OnnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM[elem],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute_(o: Onnx, name: string, v: AttrValue): IAttributeProto {
  const T = o.AttributeProto.AttributeType;
  if (typeof v === 'number') return { name, type: T.INT, i: v };
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if ('float' in v) return { name, type: T.FLOAT, f: v.float };
  return { name, type: T.INTS, ints: v.ints };
}

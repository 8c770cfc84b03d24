import { UnknownClusters } from './clusters.js';

/** A face whose person is known to the evaluation (not to the gallery). */
export interface LabelledFace {
  label: string;
  /** Unit-length embedding. */
  embedding: Float32Array;
}

export interface ClusterEvaluation {
  threshold: number;
  faces: number;
  people: number;
  clusters: number;
  /** Share of faces that belong to their cluster's majority person (1: no cluster mixes people). */
  purity: number;
  /** Clusters each person's faces end up in: mean and worst over people (1: never split). */
  meanSplits: number;
  maxSplits: number;
  /** Clusters holding more than one person. */
  mixed: number;
}

/**
 * Runs the history's incremental clustering (UnknownClusters, the server's method) over faces in
 * arrival order and scores it against the true people: purity (how clean clusters are) and
 * splits per person (how many clusters one person becomes). Used by the face-library evaluation.
 */
export function evaluateClustering(faces: readonly LabelledFace[], threshold: number, dimension = faces[0]?.embedding.length ?? 0): ClusterEvaluation {
  const clusters = new UnknownClusters(dimension, threshold);
  const members = new Map<number, string[]>();
  let nextId = 1;
  for (const f of faces) {
    const near = clusters.nearest(f.embedding);
    if (near) {
      clusters.add(near.cluster.id, f.embedding, 0, 0);
      members.get(near.cluster.id)!.push(f.label);
    } else {
      const id = nextId++;
      clusters.create(id, f.embedding, 0, 0);
      members.set(id, [f.label]);
    }
  }
  let majority = 0;
  let mixed = 0;
  const splits = new Map<string, Set<number>>();
  for (const [id, labels] of members) {
    const counts = new Map<string, number>();
    for (const l of labels) {
      counts.set(l, (counts.get(l) ?? 0) + 1);
      if (!splits.has(l)) splits.set(l, new Set());
      splits.get(l)!.add(id);
    }
    majority += Math.max(...counts.values());
    if (counts.size > 1) mixed++;
  }
  const perPerson = [...splits.values()].map((s) => s.size);
  return {
    threshold,
    faces: faces.length,
    people: splits.size,
    clusters: members.size,
    purity: faces.length ? majority / faces.length : 1,
    meanSplits: perPerson.length ? perPerson.reduce((a, b) => a + b, 0) / perPerson.length : 0,
    maxSplits: perPerson.length ? Math.max(...perPerson) : 0,
    mixed,
  };
}

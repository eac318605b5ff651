// A workflow drawn as a graph: nodes in columns by depth (the longest chain of
// parents before them), edges from parent to child, each node coloured by its
// run's state and linked to that run.

import { s } from './dom.js';

const NODE_W = 150;
const NODE_H = 40;
const GAP_X = 60;
const GAP_Y = 18;

/** Column of each node: 0 for roots, else one more than its deepest parent. */
export function depths(nodes) {
  const index = new Map(nodes.map((n, i) => [n.name, i]));
  const depth = new Array(nodes.length).fill(-1);
  const visit = (i, seen) => {
    if (depth[i] >= 0) return depth[i];
    if (seen.has(i)) return 0;
    seen.add(i);
    const parents = nodes[i].depends_on.map((e) => index.get(e.job)).filter((p) => p !== undefined);
    depth[i] = parents.length ? 1 + Math.max(...parents.map((p) => visit(p, seen))) : 0;
    return depth[i];
  };
  nodes.forEach((_, i) => visit(i, new Set()));
  return depth;
}

/** The SVG of a workflow's nodes (NodeView[]). */
export function dag(nodes) {
  const depth = depths(nodes);
  const columns = [];
  depth.forEach((d, i) => { (columns[d] = columns[d] || []).push(i); });
  const pos = new Array(nodes.length);
  columns.forEach((col, c) => col.forEach((i, r) => {
    pos[i] = { x: 10 + c * (NODE_W + GAP_X), y: 10 + r * (NODE_H + GAP_Y) };
  }));
  const width = 20 + columns.length * (NODE_W + GAP_X) - GAP_X;
  const height = 20 + Math.max(1, ...columns.map((c) => c.length)) * (NODE_H + GAP_Y) - GAP_Y;
  const index = new Map(nodes.map((n, i) => [n.name, i]));
  const svg = s('svg', { id: 'dag', class: 'dag', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img',
    'aria-label': `Workflow graph of ${nodes.length} jobs` },
    s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto' },
      s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow' }))));
  nodes.forEach((n, i) => {
    for (const edge of n.depends_on) {
      const p = index.get(edge.job);
      if (p === undefined) continue;
      const a = pos[p];
      const b = pos[i];
      const x1 = a.x + NODE_W;
      const y1 = a.y + NODE_H / 2;
      const x2 = b.x;
      const y2 = b.y + NODE_H / 2;
      const mid = (x1 + x2) / 2;
      svg.append(s('path', { class: `edge when-${edge.when}`, d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`,
        'marker-end': 'url(#arrow)' }, s('title', {}, `${edge.job} → ${n.name} (${edge.when})`)));
    }
  });
  nodes.forEach((n, i) => {
    const state = n.run ? n.run.state : 'not_started';
    const { x, y } = pos[i];
    const body = s('g', { class: `node state-${state}`, 'data-node': n.name, 'data-state': state, transform: `translate(${x},${y})` },
      s('title', {}, `${n.name}: ${state.replace(/_/g, ' ')}`),
      s('rect', { width: NODE_W, height: NODE_H, rx: 6 }),
      s('text', { x: 10, y: 17, class: 'node-name' }, n.name.length > 20 ? `${n.name.slice(0, 19)}…` : n.name),
      s('text', { x: 10, y: 32, class: 'node-state' }, state.replace(/_/g, ' ')));
    svg.append(n.run ? s('a', { href: `#/runs/${n.run.id}` }, body) : body);
  });
  return svg;
}

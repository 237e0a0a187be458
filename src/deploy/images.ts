/** keep-images: which old images of the app's repository to remove from a host. */

export interface ImageEntry {
  id: string;
  ref: string;
}

export function parseImageList(out: string): { images: ImageEntry[]; inUse: Set<string> } {
  const [, imagesPart = '', inUsePart = ''] = /@@images\n?([\s\S]*?)@@in-use\n?([\s\S]*)$/.exec(out) ?? [];
  const images = imagesPart
    .split('\n')
    .map((l) => l.trim().split(' '))
    .filter((p) => p.length === 2 && p[0].startsWith('sha256:'))
    .map(([id, ref]) => ({ id, ref }));
  const inUse = new Set(
    inUsePart
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
  );
  return { images, inUse };
}

/**
 * Keeps `keep` images: first those the blue and green containers use (the live and the rollback
 * images), then the newest others; returns the references (repo:tag, or the id when untagged) of the rest.
 */
export function imagesToPrune(images: ImageEntry[], inUse: Set<string>, keep: number): string[] {
  const order: string[] = [];
  for (const i of images) if (!order.includes(i.id)) order.push(i.id);
  const keepIds = new Set(inUse);
  for (const id of order) if (keepIds.size < keep) keepIds.add(id);
  const refs: string[] = [];
  for (const i of images) {
    if (keepIds.has(i.id)) continue;
    const ref = i.ref.endsWith(':<none>') ? i.id : i.ref;
    if (!refs.includes(ref)) refs.push(ref);
  }
  return refs;
}

import t from 'tap';
import { LiveList } from '../../src/core/live-list.ts';

t.test('LiveList: keeps insertion order and size when items are added and deleted in any order', async (t) => {
  const list = new LiveList<string>();
  const a = list.add('a');
  const b = list.add('b');
  const c = list.add('c');
  t.same([...list], ['a', 'b', 'c']);
  t.equal(list.size, 3);
  list.delete(b);
  t.same([...list], ['a', 'c'], 'middle removed');
  list.delete(a);
  t.same([...list], ['c'], 'head removed');
  const d = list.add('d');
  list.delete(c);
  t.same([...list], ['d'], 'tail removed, new tail kept');
  list.delete(d);
  t.same([...list], []);
  t.equal(list.size, 0);
  list.add('e');
  t.same([...list], ['e'], 'usable again once empty');
});

t.test('LiveList: ignores a second delete of the same node when it was already removed', async (t) => {
  const list = new LiveList<number>();
  const one = list.add(1);
  list.add(2);
  list.delete(one);
  list.delete(one);
  t.equal(list.size, 1);
  t.same([...list], [2]);
});

t.test('LiveList: iterates the items present at the start when items are deleted or added meanwhile', async (t) => {
  const list = new LiveList<number>();
  const nodes = [1, 2, 3, 4].map((n) => list.add(n));
  const seen: number[] = [];
  for (const n of list) {
    seen.push(n);
    // Closing a socket removes it (and maybe others) while the caller walks the list.
    for (const node of nodes) list.delete(node);
    list.add(n * 10);
  }
  t.same(seen, [1, 2, 3, 4]);
  t.same([...list], [10, 20, 30, 40]);
  t.equal(list.size, 4);
});

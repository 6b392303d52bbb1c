import { describe, expect, it } from "vitest";
import { bars, linePath } from "./spark";

describe("linePath", () => {
  it("spreads the values over the width, the max at the top, 0 at the bottom", () => {
    expect(linePath([0, 5, 10], 80, 20)).toBe("M0 20L40 10L80 0");
    expect(linePath([1, 2], 10, 10, 4)).toBe("M0 7.5L10 5");
  });
  it("draws all zeros flat at the bottom, one value flat, none nothing", () => {
    expect(linePath([0, 0, 0], 80, 20)).toBe("M0 20L40 20L80 20");
    expect(linePath([3], 80, 20)).toBe("M0 0H80");
    expect(linePath([], 80, 20)).toBe("");
  });
});

describe("bars", () => {
  it("draws one bar per non-zero value in its slot, scaled to the max", () => {
    expect(bars([0, 4, 2, 0], 40, 10)).toEqual([
      { x: 10, y: 0, w: 9, h: 10 },
      { x: 20, y: 5, w: 9, h: 5 },
    ]);
  });
  it("keeps a 1-pixel bar for a small value and draws nothing for no traffic", () => {
    expect(bars([1000, 1], 20, 10)[1]).toEqual({ x: 10, y: 9, w: 9, h: 1 });
    expect(bars([0, 0], 20, 10)).toEqual([]);
  });
});

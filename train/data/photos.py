"""Everyday photos for evaluation only, read where installed packages put them (Python wheels and Debian packages
that `make debs` installs), with the everyday words that name each photo's main object and a fixed dev/test split:
dev chooses recipes, test is scored once per shipped checkpoint."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from train.data.base import Sample
from vlm_demo.sources import package_dir

NAME_PROMPT = "Describe this image."
SPLITS = ("dev", "test")
OPENCV = "/usr/share/doc/opencv-doc/examples/data"  # Debian opencv-doc: OpenCV's samples/data, Apache-2.0/BSD-3
MATE = "/usr/share/backgrounds/mate/nature"  # Debian mate-backgrounds, GPL-2+
LOMIRI = "/usr/share/backgrounds"  # Debian lomiri-wallpapers-16.04 / -20.04
TUX = "/usr/share/tuxpaint/stamps"  # Debian tuxpaint-stamps-default (GPL-2): photos cut out on a transparent ground

# Keywords: the object's own words and its basic-level category ("apple", "fruit"; "sedan", "car"), never a
# superordinate one ("food", "animal", "vehicle") that any photo of the kind would earn.
# name: (source, path, keywords, credit); source is a Python package (path inside it) or "debian:<package>"
PHOTOS: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "chelsea": ("skimage", "data/chelsea.png", ("cat", "kitten", "kitty", "tabby"),
                "Chelsea the cat; Stefan van der Walt, CC0"),
    "coffee": ("skimage", "data/coffee.png", ("coffee", "espresso", "cappuccino", "latte", "cup", "mug"),
               "coffee cup; Rachel Michetti, CC0"),
    "motorcycle": ("skimage", "data/motorcycle_left.png", ("motorcycle", "motorbike", "moped", "scooter", "bike"),
                   "motorcycle (Middlebury stereo set); scikit-image data, see its README"),
    "rocket": ("skimage", "data/rocket.jpg", ("rocket", "missile", "space shuttle", "spacecraft"),
               "Falcon 9 launching DSCOVR; SpaceX, CC0"),
    "astronaut": ("skimage", "data/astronaut.png", ("astronaut", "woman", "person", "spacesuit", "space suit"),
                  "astronaut Eileen Collins; NASA, public domain"),
    "cameraman": ("skimage", "data/camera.png", ("man", "person", "photographer", "cameraman", "camera"),
                  "the cameraman; scikit-image data, see its README"),
    "coins": ("skimage", "data/coins.png", ("coin", "coins", "money"),
              "Greek coins from Pompeii; Brooklyn Museum, no known copyright restrictions"),
    "temple": ("sklearn", "datasets/images/china.jpg", ("temple", "pagoda", "palace", "building", "shrine",
                                                        "tower"), "Summer Palace, Beijing; danielbuechele, CC BY 2.0"),
    "flower": ("sklearn", "datasets/images/flower.jpg", ("flower", "flowers", "dahlia", "daisy", "blossom", "bloom"),
               "dahlia; vultilion, CC BY 2.0"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
                     ("woman", "person", "lady", "officer", "admiral", "sailor"),
                     "Grace Hopper; US Navy, public domain"),
    "cheetah_running": ("gradio", "media_assets/images/cheetah.jpg", ("cheetah", "cheetahs"),
                        "cheetah; gradio's media assets (Apache-2.0 package)"),
    "cheetah_face": ("gradio", "media_assets/images/cheetah1.jpg", ("cheetah", "cheetahs"),
                     "cheetah; gradio's media assets (Apache-2.0 package)"),
    "lion": ("gradio", "media_assets/images/lion.jpg", ("lion", "lioness", "lions"),
             "lion; gradio's media assets (Apache-2.0 package)"),
    "eiffel_tower": ("gradio", "media_assets/images/tower.jpg", ("tower", "eiffel"),
                     "the Eiffel Tower; gradio's media assets (Apache-2.0 package)"),
    "groot": ("gradio", "media_assets/images/groot.jpeg", ("groot", "tree"),
              "Groot (film still); gradio's media assets (Apache-2.0 package)"),
    "aloe": ("debian:opencv-doc", f"{OPENCV}/aloeL.jpg", ("plant", "aloe", "pot", "houseplant", "potted plant"),
             "aloe in a pot (Middlebury stereo set); OpenCV samples"),
    "apple": ("debian:opencv-doc", f"{OPENCV}/apple.jpg", ("apple", "fruit"), "a red apple; OpenCV samples"),
    "baboon": ("debian:opencv-doc", f"{OPENCV}/baboon.jpg", ("baboon", "mandrill", "monkey", "ape", "primate"),
               "mandrill face; OpenCV samples (USC-SIPI test image)"),
    "basketball": ("debian:opencv-doc", f"{OPENCV}/basketball1.png",
                   ("man", "men", "person", "people", "player", "basketball", "ball"),
                   "two men passing a basketball in a corridor; OpenCV samples (Middlebury optical flow)"),
    "hotel": ("debian:opencv-doc", f"{OPENCV}/building.jpg", ("building", "hotel", "office", "apartment"),
              "a hotel building; OpenCV samples"),
    "butterfly": ("debian:opencv-doc", f"{OPENCV}/butterfly.jpg", ("butterfly", "insect"),
                  "a swallowtail butterfly on a leaf; OpenCV samples"),
    "pekingese": ("debian:opencv-doc", f"{OPENCV}/chicky_512.png", ("dog", "puppy", "pekinese", "pekingese"),
                  "a small dog's face; OpenCV samples"),
    "citrus": ("debian:opencv-doc", f"{OPENCV}/fruits.jpg",
               ("fruit", "fruits", "orange", "lemon", "lime", "kiwi", "citrus"),
               "halved oranges, lemon, lime and kiwi; OpenCV samples"),
    "palace": ("debian:opencv-doc", f"{OPENCV}/home.jpg", ("building", "palace", "house", "mansion", "tower", "castle"),
               "an ornate yellow building with towers; OpenCV samples"),
    "car_in_traffic": ("debian:opencv-doc", f"{OPENCV}/licenseplate_motion.jpg", ("car", "cars", "sedan",
                                                                                   "automobile"),
                       "the back of a silver car, motion-blurred; OpenCV samples"),
    "footballer": ("debian:opencv-doc", f"{OPENCV}/messi5.jpg",
                   ("man", "person", "player", "footballer", "football", "soccer", "ball"),
                   "a footballer kicking a ball; OpenCV samples"),
    "orange": ("debian:opencv-doc", f"{OPENCV}/orange.jpg", ("orange", "fruit"), "an orange; OpenCV samples"),
    "squirrel": ("debian:opencv-doc", f"{OPENCV}/squirrel_cls.jpg", ("squirrel",),
                 "a squirrel on a branch; OpenCV samples"),
    "sweets": ("debian:opencv-doc", f"{OPENCV}/smarties.png", ("sweets", "sweet", "candy", "candies", "smarties",
                                                               "chocolate"),
               "coloured sugar-coated chocolates; OpenCV samples"),
    "old_town": ("debian:opencv-doc", f"{OPENCV}/leuvenA.jpg", ("building", "buildings", "house", "houses",
                                                                 "street", "town"),
                 "brick houses on a cobbled street in Leuven; OpenCV samples"),
    "circuit_board": ("debian:opencv-doc", f"{OPENCV}/board.jpg", ("circuit board", "circuit", "board", "chip",
                                                                    "electronics"),
                      "a printed circuit board; OpenCV samples"),
    "gerbera": ("debian:mate-backgrounds", f"{MATE}/FreshFlower.jpg", ("flower", "flowers", "gerbera", "daisy",
                                                                        "blossom", "petals"),
                "an orange flower, close up (FreshFlower); Jens Ansorg, GPL-2+"),
    "marigold": ("debian:mate-backgrounds", f"{MATE}/Garden.jpg", ("flower", "flowers", "marigold", "blossom"),
                 "a red marigold (Garden); Charles Barbin, GPL-2+"),
    "ladybird": ("debian:mate-backgrounds", f"{MATE}/LadyBird.jpg",
                 ("ladybird", "ladybug", "beetle", "insect", "flower", "flowers"),
                 "a ladybird among forget-me-nots (LadyBird); Charles Barbin, GPL-2+"),
    "yellow_flower": ("debian:mate-backgrounds", f"{MATE}/YellowFlower.jpg", ("flower", "flowers", "daisy",
                                                                               "gerbera", "blossom", "petals"),
                      "a yellow flower, close up (YellowFlower); Charles Barbin, GPL-2+"),
    "grass": ("debian:mate-backgrounds", f"{MATE}/GreenMeadow.jpg", ("grass", "lawn", "meadow", "plant", "plants"),
              "blades of grass (GreenMeadow); Timothy Schellhase, Lapo Calamandrei, GPL-2+"),
    "wet_leaves": ("debian:mate-backgrounds", f"{MATE}/RainDrops.jpg", ("leaf", "leaves", "plant", "grass", "drops",
                                                                         "raindrops"),
                   "raindrops on green leaves (RainDrops); mate-backgrounds, GPL-2+"),
    "fig": ("debian:lomiri-wallpapers-16.04", f"{LOMIRI}/Picture_0B_by_freespace.jpg", ("fig", "fruit", "plate",
                                                                                          "bowl"),
            "half a fig on a red dish; Trevor 'Freespace', CC BY 4.0"),
    "paintbrushes": ("debian:lomiri-wallpapers-16.04", f"{LOMIRI}/Picture_1A_by_freespace.jpg",
                     ("brush", "brushes", "paintbrush", "paintbrushes", "broom"),
                     "paint brushes in colours; Trevor 'Freespace', CC BY 4.0"),
    "spaniels": ("debian:lomiri-wallpapers-16.04", f"{LOMIRI}/friends_by_Aitzol_Berasategi.jpg",
                 ("dog", "dogs", "spaniel", "spaniels", "cocker"),
                 "two spaniels looking out of a door; Aitzol Berasategi, CC BY 4.0"),
    "wall_clock": ("debian:lomiri-wallpapers-16.04", f"{LOMIRI}/greentock_by_Peter_Nerlich.jpg", ("clock",),
                   "a wall clock; Peter Nerlich, CC BY-SA 4.0"),
    "nuthatch": ("debian:lomiri-wallpapers-20.04", f"{LOMIRI}/Kleiber_by_Lukas_Baubkus.jpg", ("bird", "nuthatch"),
                 "a nuthatch on a tree trunk; Lukas Baubkus, CC BY-SA 3.0"),
}
TUXPAINT: dict[str, tuple[str, tuple[str, ...], str]] = {  # name: (stamp, keywords, what it shows)
    "firefighter": ("people/fireman200b.png", ("firefighter", "fireman", "man", "person", "suit"),
                    "a firefighter in a silver protective suit"),
    "sedan": ("vehicles/auto/sedan.png", ("car", "sedan", "automobile"), "a blue sedan"),
    "sports_car": ("vehicles/auto/sportscar2.png", ("car", "sports car", "convertible", "automobile"),
                   "a red convertible sports car"),
    "pickup": ("vehicles/auto/truck.png", ("truck", "pickup", "car"), "a pickup truck"),
    "bus": ("vehicles/masstransit/green_korean_bus.png", ("bus",), "a green city bus"),
    "airliner": ("vehicles/flight/planes/747.png", ("plane", "airplane", "aeroplane", "airliner", "jet",
                                                    "aircraft"), "a jumbo jet"),
    "garbage_truck": ("vehicles/garbagetruck.png", ("truck", "garbage truck", "lorry", "dustcart"),
                      "a garbage truck"),
    "fire_engine": ("vehicles/emergency/firetruck.png", ("fire engine", "fire truck", "truck"), "a fire engine"),
    "corn_cob": ("food/vegetables/corn.png", ("corn", "maize", "cob", "ear", "vegetable"), "a cob of corn"),
    "toilet": ("household/toilet.png", ("toilet",), "a toilet"),
    "light_bulb": ("household/Lightbulb.png", ("bulb", "light bulb", "lightbulb", "lamp"), "a light bulb"),
    "guitar": ("hobbies/music/string/guitar_classical.png", ("guitar",), "a classical guitar"),
    "violin": ("hobbies/music/string/violin.png", ("violin", "fiddle"), "a violin"),
    "oak": ("plants/trees/holm_oak.png", ("tree", "oak"), "a holm oak tree"),
    "mushroom": ("plants/mushrooms/cep.png", ("mushroom", "cep", "porcini", "bolete", "fungus"), "a cep mushroom"),
    "horse": ("animals/mammals/equines/horse.png", ("horse", "pony"), "a horse"),
    "zebra": ("animals/mammals/equines/zebra.png", ("zebra",), "a zebra"),
    "owl": ("animals/birds/owl.png", ("owl", "bird"), "a snowy owl"),
    "peacock": ("animals/birds/peacock.png", ("peacock", "peafowl", "bird"), "a peacock"),
    "husky": ("animals/mammals/dogs/dog.png", ("dog", "husky", "malamute"), "a husky"),
}
PHOTOS.update({name: ("debian:tuxpaint-stamps-default", f"{TUX}/{stamp}", keywords,
                      f"{shows} (Tux Paint stamp, cut out, shown on white); Tux Paint stamps, GPL-2")
               for name, (stamp, keywords, shows) in TUXPAINT.items()})
# The first 15 chose the recipes and the app's examples, so they are dev; a few of each new source join them.
DEV = frozenset(list(PHOTOS)[:15] + ["apple", "hotel", "squirrel", "marigold", "grass", "wall_clock", "sedan", "bus",
                                     "guitar", "horse", "owl", "footballer"])
_KINDS = {  # (group, kind of subject): photos
    ("animal", "cat"): "chelsea cheetah_running cheetah_face lion", ("animal", "dog"): "pekingese spaniels husky",
    ("animal", "bird"): "nuthatch owl peacock", ("animal", "insect"): "butterfly ladybird",
    ("animal", "monkey"): "baboon", ("animal", "squirrel"): "squirrel", ("animal", "horse"): "horse zebra",
    ("person", "person"): "astronaut cameraman grace_hopper basketball footballer firefighter",
    ("food", "fruit"): "apple citrus orange fig", ("food", "vegetable"): "corn_cob", ("food", "drink"): "coffee",
    ("food", "sweets"): "sweets", ("vehicle", "car"): "car_in_traffic sedan sports_car",
    ("vehicle", "truck"): "pickup garbage_truck fire_engine", ("vehicle", "bus"): "bus",
    ("vehicle", "motorcycle"): "motorcycle", ("vehicle", "aircraft"): "airliner rocket",
    ("plant", "flower"): "flower gerbera marigold yellow_flower", ("plant", "plant"): "aloe grass wet_leaves oak",
    ("plant", "mushroom"): "mushroom", ("building", "building"): "temple eiffel_tower hotel palace old_town",
    ("object", "money"): "coins", ("object", "film character"): "groot",
    ("object", "electronics"): "circuit_board light_bulb",
    ("object", "tool"): "paintbrushes", ("object", "clock"): "wall_clock", ("object", "toilet"): "toilet",
    ("object", "musical instrument"): "guitar violin",
}
KINDS: dict[str, tuple[str, str]] = {name: kind for kind, names in _KINDS.items() for name in names.split()}


def photo_path(name: str) -> Path:
    """Where photo `name` is on this machine; FileNotFoundError names the package that brings it."""
    source, relative, _, _ = PHOTOS[name]
    if source.startswith("debian:"):
        path = Path(relative)
        if not path.is_file():
            raise FileNotFoundError(f"photo '{name}' ({path}) comes from Debian's {source[7:]}: run `make debs`")
        return path
    folder = package_dir(source)
    if folder is None:
        raise FileNotFoundError(f"photo '{name}' ships inside the package '{source}', which is not installed")
    return folder / relative


def load_photo(name: str) -> Image.Image:
    """The photo as RGB; a cut-out (transparent) photo is laid on white, padded to a square at least 224 px."""
    image = Image.open(photo_path(name))
    if image.mode in ("RGBA", "LA", "P") and PHOTOS[name][0] == "debian:tuxpaint-stamps-default":
        image = image.convert("RGBA")
        side = max(224, round(max(image.size) * 1.15))
        canvas = Image.new("RGBA", (side, side), (255, 255, 255, 255))
        canvas.alpha_composite(image, ((side - image.width) // 2, (side - image.height) // 2))
        return canvas.convert("RGB")
    return image.convert("RGB")


def photo_names(split: str) -> list[str]:
    if split not in SPLITS:
        raise ValueError(f"'photos' has the splits {', '.join(SPLITS)} (an evaluation set, never trained on); "
                         f"got {split!r}")
    return [name for name in PHOTOS if (name in DEV) == (split == "dev")]


def photos_samples(split: str, count: int | None = None) -> list[Sample]:
    """Everyday photos with the words that name their main object. `dev` chooses recipes (validation during
    training reads it as `val`), `test` is the held-out score; training on them is refused."""
    if split == "train":
        raise ValueError("'photos' is an evaluation set (everyday photos from installed packages); train on "
                         "'emoji' or 'clipart' instead")
    names = photo_names("dev" if split == "val" else split)[:count]
    return [Sample(f"photos-{name}", lambda name=name: load_photo(name), NAME_PROMPT,
                   f"A photo of a {PHOTOS[name][2][0]}.", "name", qtype="photos", label=PHOTOS[name][2][0],
                   meta={"keywords": list(PHOTOS[name][2]), "credit": PHOTOS[name][3], "group": KINDS[name][0],
                         "kind": KINDS[name][1]})
            for name in names]
